"""Scrape targets of the units' own metrics endpoints, in Prometheus' service discovery format.

http_sd (served at /targets) and file_sd (`synsup targets --format file_sd`) share one JSON
shape: a list of target groups, here one per unit with metrics endpoints."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ..spec import UnitSpec

FORMATS = ("file_sd", "http_sd")


def instance_of(spec: UnitSpec) -> str:
    """The `instance` label of a unit's scrape target: synsup's own series of the unit carry it
    too, so the two join (`on(instance)`)."""
    return dict(spec.metrics_labels).get("instance", spec.name)


def target_groups(specs: Iterable[UnitSpec]) -> list[dict[str, Any]]:
    return [{"targets": list(spec.metrics), "labels": {**dict(spec.metrics_labels), "instance": instance_of(spec)}}
            for spec in specs if spec.metrics]


def targets_json(specs: Iterable[UnitSpec]) -> str:
    return json.dumps(target_groups(specs), indent=2) + "\n"
