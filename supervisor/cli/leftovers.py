"""Processes recorded by a synsup daemon that is gone: listed by `status`, stopped by `stop`
and by `start --replace`, in reverse dependency order. A recorded process is found by its pid
and start time (whatever its command line looks like now); what escaped the recorded groups is
found by the private owner mark and its descent from a recorded process (`owner_mark`)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import psutil

from ..owner_mark import Marked, find_ours, nonces_of, read_token, recorded_of
from ..process_records import same_process
from ..statedir import StateDir


def leftover_records(state: StateDir) -> dict[str, dict[str, Any]]:
    """Unit name -> record, for the recorded processes that still run."""
    records = state.read_json(state.units_file) or {}
    if not isinstance(records, dict):
        return {}
    return {name: r for name, r in records.items() if isinstance(r, dict) and same_process(r)}


def escaped_processes(state: StateDir, records: dict[str, dict[str, Any]]) -> dict[int, Marked]:
    """Processes of ours that are no recorded leader: marked with this state dir's token and
    descended from a recorded unit (or from the daemon, while it lived), or a command whose
    nonce was recorded before it was forked."""
    daemon = state.read_json(state.daemon_file)
    recorded = recorded_of([*records.values(), daemon])
    written = state.read_json(state.units_file)
    nonces = nonces_of(written.values()) if isinstance(written, dict) else set()
    leaders = {int(r["pid"]) for r in records.values()}
    return {pid: m for pid, m in find_ours(read_token(state), recorded, nonces=nonces).items() if pid not in leaders}


def orphan_rows(records: dict[str, dict[str, Any]], state: StateDir | None = None) -> list[dict[str, Any]]:
    """The recorded units, then what else of ours runs (a grandchild that left its unit's group)."""
    rows = [{"name": name, "state": "orphaned", "pid": r["pid"], "step": r.get("step", 0)}
            for name, r in sorted(records.items(), key=lambda item: item[1].get("step", 0))]
    for pid, marked in (escaped_processes(state, records) if state is not None else {}).items():
        rows.append({"name": marked.unit, "state": "orphaned", "pid": pid, "step": None})
    return rows


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
    its stop timeout; then what escaped the groups. Returns the names stopped."""
    records = leftover_records(state)
    escaped = escaped_processes(state, records)  # before the leaders go: their descent is seen now
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
    _kill_escaped(escaped)
    state.remove(state.units_file)
    return sorted(records) + sorted({m.unit for m in escaped.values()} - set(records))


def _kill_escaped(escaped: dict[int, Marked]) -> None:
    """SIGKILL each one that is still the process found (same pid, same start time)."""
    for pid, marked in escaped.items():
        if same_process({"pid": pid, "create_time": marked.create_time}):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    wait_gone(list(escaped), 5.0)
