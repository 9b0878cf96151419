"""The daemon's records in the state dir: daemon.json (who runs) and units.json (the pids it
started), so that a later synsup can find processes a dead daemon left behind. A full or
read-only state dir never stops the daemon: it says so on stderr and goes on supervising."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import structlog

from ..engine.supervisor import Supervisor
from ..process_records import process_record, still_running
from ..statedir import StateDir

log = structlog.get_logger()
WRITE_DELAY = 0.05  # seconds: a burst of changes is one write, never between a unit's exit and its new fork


class Records:
    def __init__(self, state: StateDir) -> None:
        self.state = state
        self._kept: dict[str, dict[str, Any]] = {}
        self._serialised: dict[str, str] = {}  # name -> its record as JSON, made once per pid
        self._pending: asyncio.TimerHandle | None = None
        self._dirty = False
        self._failing = False

    def write_log_dir(self, log_dir: str) -> None:
        self._write(self.state.log_dir_file, {"log_dir": log_dir})

    def write_daemon(self, record: dict[str, Any]) -> None:
        self._write(self.state.daemon_file, record)

    def changed(self, sup: Supervisor) -> None:
        """Write units.json soon (once for a burst of changes)."""
        if not self._dirty:
            self._dirty = True
            self._pending = asyncio.get_running_loop().call_later(WRITE_DELAY, self.write_units, sup)

    def write_units(self, sup: Supervisor) -> None:
        self._dirty = False
        records, serialised = {}, {}
        for name, unit in sup.units.items():
            if unit.pid and unit.spec.argv:
                kept = self._kept.get(name)
                if kept and kept["pid"] == unit.pid:
                    records[name], serialised[name] = kept, self._serialised[name]
                    continue
                records[name] = {"pid": unit.pid, "cmdline": list(unit.spec.argv), "step": unit.spec.step,
                                 "stop_timeout": unit.spec.stop_timeout,
                                 "create_time": (process_record(unit.pid) or {}).get("create_time")}
                serialised[name] = json.dumps(records[name])
        self._kept, self._serialised = records, serialised  # only a new pid is looked up and serialised
        text = "{" + ", ".join(f"{json.dumps(name)}: {record}" for name, record in serialised.items()) + "}"
        self._write_text(self.state.units_file, text)

    def finish(self, sup: Supervisor) -> None:
        """At exit: keep units.json while any recorded process still lives."""
        if self._pending is not None:
            self._pending.cancel()
        self.write_units(sup)
        self.state.remove(self.state.daemon_file)
        if not any(still_running(r) for r in self._kept.values()):
            self.state.remove(self.state.units_file)
        else:
            log.error("daemon.processes_left", units=sorted(self._kept))

    def _write(self, path: str, data: Any) -> None:
        self._write_text(path, json.dumps(data))

    def _write_text(self, path: str, text: str) -> None:
        try:
            self.state.write_text(path, text)
            self._failing = False
        except OSError as e:
            if not self._failing:  # once per spell of failures, not per unit change
                print(f"synsup: cannot write {path}: {e.strerror}; supervising on", file=sys.stderr)
            self._failing = True
