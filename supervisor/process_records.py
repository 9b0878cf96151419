"""Records of processes that find them again after a daemon is gone: pid, start time, command."""

from __future__ import annotations

import os
from typing import Any

import psutil

from .proc_stat import TICKS, stat_fields
from .statedir import StateDir


def process_record(pid: int) -> dict[str, Any] | None:
    """What identifies a live process beyond its pid (pids get reused)."""
    try:
        p = psutil.Process(pid)
        return {"pid": pid, "create_time": p.create_time(), "cmdline": p.cmdline()}
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def create_time(pid: int, boot: float | None = None) -> float | None:
    """The start time psutil gives (what `process_record` keeps and `same_process` compares),
    computed as psutil does from one read of /proc/PID/stat: no psutil object, and the boot time
    (/proc/stat, read by psutil on every call) read once by a caller that asks for many pids."""
    fields = stat_fields(pid)
    if fields is None:
        return None
    return float(fields[19]) / TICKS + (psutil.boot_time() if boot is None else boot)


def still_running(record: dict[str, Any]) -> bool:
    """Same pid, same start time, same command (a process may retitle itself, as redis-server
    does, so the program name is compared when the full command line differs)."""
    live = process_record(int(record.get("pid", 0) or 0)) if record.get("pid") else None
    if not live or live["create_time"] != record.get("create_time"):
        return False
    recorded, now = record.get("cmdline") or [], live["cmdline"] or []
    return recorded == now or bool(recorded and now and
                                   os.path.basename(recorded[0]) in os.path.basename(now[0]))


def same_process(record: dict[str, Any]) -> bool:
    """The recorded process itself still runs: same pid, same start time, whatever its command
    line says now (a `--python` wrapper script execs Python; redis-server retitles itself)."""
    try:
        pid, created = int(record.get("pid") or 0), record.get("create_time")
        return pid > 0 and created is not None and psutil.Process(pid).create_time() == created \
            and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, OSError, TypeError, ValueError):
        return False


def running_daemon(state: StateDir) -> int | None:
    record = state.read_json(state.daemon_file)
    return record["pid"] if isinstance(record, dict) and still_running(record) else None
