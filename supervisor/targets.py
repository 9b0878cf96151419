"""Scrape targets of the units' own metrics endpoints, in Prometheus' service discovery format.

http_sd (served at /targets) and file_sd (`synsup targets --format file_sd`) share one JSON
shape: a list of target groups, here one per unit with metrics endpoints."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

from .render import print_findings
from .source import Loaded
from .spec import UnitSpec

FORMATS = ("file_sd", "http_sd")


def target_groups(specs: Iterable[UnitSpec]) -> list[dict[str, Any]]:
    return [{"targets": list(spec.metrics), "labels": {"instance": spec.name, **dict(spec.metrics_labels)}}
            for spec in specs if spec.metrics]


def targets_json(specs: Iterable[UnitSpec]) -> str:
    return json.dumps(target_groups(specs), indent=2) + "\n"


def print_targets(loaded: Loaded) -> int:
    """`synsup targets`: the groups of a config that checks out, or its errors."""
    if loaded.errors:
        print_findings(loaded.errors)
        print(f"{len(loaded.errors)} error(s): no targets", file=sys.stderr)
        return 1
    print(targets_json(loaded.specs), end="")
    return 0
