"""Prometheus text lines for the per-unit families, written directly: prometheus_client's
generate_latest checks and escapes every sample again at every scrape (about 15 us a sample,
5,500 samples for 500 units). Labels come out sorted, as generate_latest writes them, so a
scraper sees the same text."""

from __future__ import annotations

import math


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def label_text(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in sorted(labels.items())) + "}"


def number(value: float) -> str:
    value = float(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return "NaN" if math.isnan(value) else repr(value)


def header(name: str, help_text: str, kind: str) -> str:
    return f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n"
