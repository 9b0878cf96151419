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

from ..engine.preflight import tcp_listening
from ..errors import SynsupError
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


def stop_leftovers(state: StateDir, say: Any = print, only: set[str] | None = None) -> list[str]:
    """Stop every leftover unit (`only`: these units), last step first: SIGCONT+SIGTERM to its
    group, SIGKILL after its stop timeout; then what escaped the groups. Returns the names stopped."""
    records = leftover_records(state)
    chosen = records if only is None else {n: r for n, r in records.items() if n in only}
    escaped = {pid: m for pid, m in escaped_processes(state, records).items()  # before the leaders go: their
               if only is None or m.unit in only}  # descent is seen now
    steps = sorted({r.get("step", 0) for r in chosen.values()}, reverse=True)
    for step in steps:
        group = {n: r for n, r in chosen.items() if r.get("step", 0) == step}
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
    if only is None:
        state.remove(state.units_file)
    else:  # the others stay recorded: the daemon about to start adopts them
        written = state.read_json(state.units_file)
        if isinstance(written, dict):
            state.write_json(state.units_file, {n: r for n, r in written.items() if n not in chosen})
    return sorted(chosen) + sorted({m.unit for m in escaped.values()} - set(chosen))


def listening(pid: int) -> tuple[str, ...]:
    """HOST:PORT of every TCP socket the process (and its descendants) listens on, in this network
    namespace (IPv4; an IPv6 one as [HOST]:PORT)."""
    try:
        root = psutil.Process(pid)
        found = set()
        for proc in [root, *root.children(recursive=True)]:
            for c in proc.net_connections(kind="inet"):
                if c.status == psutil.CONN_LISTEN and c.laddr:
                    found.add(f"[{c.laddr.ip}]:{c.laddr.port}" if ":" in c.laddr.ip else f"{c.laddr.ip}:{c.laddr.port}")
        return tuple(sorted(found))
    except psutil.Error:
        return ()


def retire_moved(state: StateDir, moved: dict[str, str], say: Any = print, ports_wait: float = 10.0) -> None:
    """`start --cluster`: stop what an earlier daemon of this node left of units the cluster now
    places on another node (`moved`: unit -> that node), wait until they exited and their ports are
    closed, and say so (`retired: persister2 (now placed on c)`); the others stay to be adopted."""
    records = leftover_records(state)
    ports = {int(a.rsplit(":", 1)[1]) for n in moved if n in records for a in listening(int(records[n]["pid"]))}
    stop_leftovers(state, lambda line: None, set(moved))
    deadline = time.monotonic() + ports_wait
    while (still := sorted(p for p in ports if tcp_listening(p))) and time.monotonic() < deadline:
        time.sleep(0.05)
    if still:
        raise SynsupError(f"port(s) {', '.join(map(str, still))} of {', '.join(sorted(moved))} still in use "
                          f"{ports_wait:g}s after it was stopped; nothing started")
    for name, node in sorted(moved.items()):
        say(f"retired: {name} (now placed on {node})")


def _kill_escaped(escaped: dict[int, Marked]) -> None:
    """SIGKILL each one that is still the process found (same pid, same start time)."""
    for pid, marked in escaped.items():
        if same_process({"pid": pid, "create_time": marked.create_time}):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    wait_gone(list(escaped), 5.0)
