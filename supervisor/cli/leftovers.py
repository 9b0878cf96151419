"""Processes recorded by a synsup daemon that is gone: listed by `status`, stopped by `stop`
and by `start --replace`, in reverse dependency order."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import psutil

from ..engine.process import MARKER, STATE_MARKER
from ..process_records import still_running
from ..statedir import StateDir


def leftover_records(state: StateDir) -> dict[str, dict[str, Any]]:
    """Unit name -> record, for the recorded processes that still run."""
    records = state.read_json(state.units_file) or {}
    if not isinstance(records, dict):
        return {}
    return {name: r for name, r in records.items() if isinstance(r, dict) and still_running(r)}


def orphan_rows(records: dict[str, dict[str, Any]], state: StateDir | None = None) -> list[dict[str, Any]]:
    """The recorded units, then what else carries this state dir's marker (a migration an
    upgrade ran, a grandchild that left its unit's group)."""
    rows = [{"name": name, "state": "orphaned", "pid": r["pid"], "step": r.get("step", 0)}
            for name, r in sorted(records.items(), key=lambda item: item[1].get("step", 0))]
    recorded = {r["pid"] for r in records.values()}
    for pid, unit in (_marked(state.path) if state is not None else {}).items():
        if pid not in recorded:
            rows.append({"name": unit or "?", "state": "orphaned", "pid": pid, "step": None})
    return rows


def _marked(state_path: str) -> dict[int, str | None]:
    """pid -> unit marker of every live process carrying this state dir's marker."""
    found = {}
    for proc in psutil.process_iter(["pid", "environ"]):
        try:
            environ = proc.info["environ"] or {}
            if environ.get(STATE_MARKER) == state_path and _alive(proc.info["pid"]):
                found[proc.info["pid"]] = environ.get(MARKER)
        except psutil.Error:
            pass
    return found


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _alive(pid: int) -> bool:
    """Running, not a zombie (a dead process its parent has not reaped yet counts as gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """The pids still alive after `timeout` seconds (not our children: polled)."""
    deadline = time.monotonic() + timeout
    alive = [p for p in pids if _alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if _alive(p)]
    return alive


def stop_leftovers(state: StateDir, say: Any = print) -> list[str]:
    """Stop every leftover unit, last step first: SIGCONT+SIGTERM to its group, SIGKILL after
    its stop timeout. Returns the names stopped."""
    records = leftover_records(state)
    steps = sorted({r.get("step", 0) for r in records.values()}, reverse=True)
    for step in steps:
        group = {n: r for n, r in records.items() if r.get("step", 0) == step}
        listed = ", ".join(f"{n} (pid {r['pid']})" for n, r in sorted(group.items()))
        say(f"stopping {listed}")
        for record in group.values():
            _signal_group(record["pid"], signal.SIGCONT)
            _signal_group(record["pid"], signal.SIGTERM)
        timeout = max(float(r.get("stop_timeout") or 30.0) for r in group.values())
        for pid in wait_gone([r["pid"] for r in group.values()], timeout):
            _signal_group(pid, signal.SIGKILL)
        wait_gone([r["pid"] for r in group.values()], 5.0)
    marked = _kill_marked(state.path)
    state.remove(state.units_file)
    return sorted(records) + sorted(n for n in marked if n not in records)


def _kill_marked(state_path: str) -> list[str]:
    """What escaped the recorded groups (a `setsid` grandchild, an upgrade's migration): every
    process whose environment says it belongs to this state dir. Returns their unit markers."""
    marked = _marked(state_path)
    for pid in marked:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    wait_gone(list(marked), 5.0)
    return [unit or f"pid {pid}" for pid, unit in marked.items()]
