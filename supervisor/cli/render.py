"""Everything the CLI prints about plans, findings and status."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from typing import Any

from ..protocol import DaemonStatus, StatusReply, UnitReport, UnitStatus
from ..source import Finding
from ..spec import UnitSpec, steps_of


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


def size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return f"{n}B"


def percent(p: float | None) -> str:
    return "-" if p is None else f"{p:.1f}"


ERROR_WIDTH = 60  # longer errors go below the table, in full
STATE_COLOURS = {"ready": "32", "failed": "31", "unhealthy": "33", "backoff": "33", "exited": "33", "orphaned": "31",
                 "degraded": "33",
                 "starting": "36", "waiting": "36", "stopping": "35", "stopped": "2"}


def use_colour(stream: Any) -> bool:
    """Colours on a terminal, unless NO_COLOR is set (https://no-color.org)."""
    return bool(stream.isatty()) and not os.environ.get("NO_COLOR")


def _paint(cell: str, width: int, state: str, colour: bool) -> str:
    padded = cell.ljust(width)
    code = STATE_COLOURS.get(state)
    return f"\x1b[{code}m{padded}\x1b[0m" if colour and code else padded


def status_table(reply: StatusReply, now: float, colour: bool = False) -> str:
    daemon, units = reply.daemon, reply.units
    header = (("PAUSED: no automatic restarts, no reloads (synsup resume)\n" if daemon.paused else "")
              + f"synsup {daemon.version} pid {daemon.pid} {daemon.state}, "
              f"config generation {daemon.config_generation}")
    rows: list[tuple[str, ...]] = [("UNIT", "STATE", "VERSION", "PID", "UPTIME", "RESTARTS", "RSS", "CPU%",
                                    "HEALTH", "LAST ERROR")]
    long_errors = []
    for u in units:
        error = u.error or ""
        if len(error) > ERROR_WIDTH:
            long_errors.append(f"{u.name}: {error}")
            error = "(below)"
        rows.append((u.name, _state_cell(u, now), u.version or "-", str(u.pid or "-"), duration(u.uptime),
                     str(u.restarts), size(u.rss_bytes), percent(u.cpu_percent), _short(_health(u), 30), error))
    if daemon.proxy:  # --proxy: each unit's server state in the proxy, after STATE
        rows = [(*r[:2], p, *r[2:]) for r, p in zip(rows, ["PROXY"] + [u.proxy or "-" for u in units])]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = [header]
    states = [""] + ["degraded" if u.degraded else str(u.state) for u in units]
    for row, state in zip(rows, states):
        cells = [_paint(cell, w, state, colour) if i == 1 else cell.ljust(w)
                 for i, (cell, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells) + "  " + row[-1])
    if long_errors:
        lines.append("last errors:")
        lines.extend(f"  {e}" for e in long_errors)
    lines.extend(_degraded(units))
    lines.extend(_config_on_disk(daemon))
    lines.extend(_proxy_note(daemon.proxy))
    lines.extend(_daemon_notes(daemon, units, now))
    return "\n".join(line.rstrip() for line in lines)


def _config_on_disk(daemon: DaemonStatus) -> list[str]:
    """The files on disk, when synsup rejected them: the units keep the last accepted config."""
    on_disk = daemon.config_on_disk or {}
    errors = on_disk.get("errors") or daemon.reload_error or []
    if not errors:
        return []
    at = time.strftime("%H:%M", time.localtime(on_disk.get("at") or time.time()))
    generation = on_disk.get("units_run_generation", daemon.config_generation)
    return [f"config on disk rejected at {at}: {errors[0]}; units run generation {generation}",
            "last reload rejected:", *(f"  {e}" for e in errors)]


def _health(unit: UnitStatus) -> str:
    return "degraded (below)" if unit.degraded else unit.health or "-"


def _degraded(units: list[UnitReport]) -> list[str]:
    """Units that answer their own checks while their peers' requests to them fail: why, in full."""
    lines = [f"  {u.name}: {u.degraded}" for u in units if u.degraded]
    return ["degraded (ready, but its peers cannot reach it as configured):", *lines] if lines else []


def _proxy_note(proxy: dict[str, Any] | None) -> list[str]:
    if not proxy:
        return []
    if proxy.get("ok"):
        return [f"proxy: {proxy['kind']} at {proxy['target']} ok" + ("" if proxy.get("drains") else " (no drain)")]
    return [f"warning: proxy {proxy['kind']} at {proxy['target']}: {proxy.get('error')}; units are supervised without it"]


def _state_cell(unit: UnitStatus, now: float) -> str:
    state = str(unit.state)
    if unit.degraded and state == "ready":
        return "ready (degraded)"
    if unit.held:
        return f"{state} (by admin)"
    if state == "exited":
        return "exited (paused)"
    if unit.waiting_for:
        return f"{state} (for {unit.waiting_for})"
    if unit.retry_at:
        return f"{state} (retry in {duration(max(0.0, unit.retry_at - now))})"
    return state


def _daemon_notes(daemon: DaemonStatus, units: list[UnitReport], now: float) -> list[str]:
    notes = []
    operation = daemon.operation
    if operation:
        notes.append(f"running: {operation['name']} (for {duration(now - (operation.get('started_at') or now))})"
                     + (f"; queued: {', '.join(daemon.queued)}" if daemon.queued else ""))
    notes.extend(_upgrade_note(daemon.last_upgrade or {}))
    notes.extend(_partial_upgrade_note(daemon.partial_upgrade))
    last = daemon.last_reload or {}
    if last.get("result") == "partial":
        notes.append(f"last reload partial: {last.get('unit')} did not become ready ({last.get('error')}); "
                     "it runs its last good config, units not yet restarted kept theirs")
    notes.extend(f"{u.name}: {u.log}" for u in units if u.log)
    notes.extend(f"{u.name}: {u.installed}" for u in units if u.installed)
    return notes


def _upgrade_note(last: dict[str, Any]) -> list[str]:
    if not last:
        return []
    at = time.strftime("%H:%M:%S", time.localtime(last.get("at") or 0))
    versions = f"{last.get('from_version') or '?'} -> {last.get('to_version') or '?'}"
    if last.get("result") == "upgraded":
        return [f"last upgrade: {versions} at {at}"]
    where = f": {last['unit']} did not become ready" if last.get("unit") else ""
    return [f"last upgrade {last.get('result')} ({versions}) at {at}{where}: {last.get('error') or ''}".rstrip(": ")]


def _partial_upgrade_note(partial: dict[str, Any] | None) -> list[str]:
    """Shown until the admin finishes the upgrade or rolls it back."""
    if not partial:
        return []
    new, old = partial.get("new") or {}, partial.get("old") or {}
    at = time.strftime("%H:%M", time.localtime(partial.get("at") or 0))
    return [f"upgrade partial since {at}: {', '.join(partial.get('units') or [])} run {new.get('version') or '?'} "
            f"({new.get('python')}), the others {old.get('version') or '?'}: finish it with `synsup upgrade`, "
            f"or roll back with `synsup upgrade --python {old.get('python')}`"]


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
