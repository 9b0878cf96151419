"""Everything the CLI prints about plans, findings and status."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from .source import Finding
from .spec import UnitSpec, steps_of


def print_findings(findings: Iterable[Finding]) -> None:
    for finding in findings:
        print(finding.format(), file=sys.stderr)


def print_plan(specs: list[UnitSpec]) -> None:
    by_name = {s.name: s for s in specs}
    print("start plan:")
    for number, step in enumerate(steps_of(specs), 1):
        print(f"  step {number}: {', '.join(step)}")
        for name in step:
            print(f"    {name:<24} {by_name[name].describe}")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def status_table(reply: dict[str, Any], now: float) -> str:
    daemon = reply.get("daemon") or {}
    header = (f"synsup {daemon.get('version', '')} pid {daemon.get('pid')} {daemon.get('state')}, "
              f"config generation {daemon.get('config_generation')}")
    rows = [("UNIT", "STATE", "PID", "UPTIME", "RESTARTS", "HEALTH", "LAST ERROR")]
    for u in reply.get("units", []):
        rows.append((u["name"], u["state"], str(u["pid"] or "-"), duration(u.get("uptime")),
                     str(u["restarts"]), _short(u.get("health") or "-", 30), _short(u.get("error") or "", 70)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = [header]
    for row in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    if daemon.get("reload_error"):
        lines.append("last reload rejected:")
        lines.extend(f"  {e}" for e in daemon["reload_error"])
    return "\n".join(line.rstrip() for line in lines)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
