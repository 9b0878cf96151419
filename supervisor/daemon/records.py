"""The daemon's records in the state dir: daemon.json (who runs) and units.json (the pids it
started), so that a later synsup can find processes a dead daemon left behind. A full or
read-only state dir never stops the daemon: it says so on stderr and goes on supervising.

Files are written by one thread of their own, in the order asked: replacing units.json costs
milliseconds on ext4 (the new file's blocks are flushed at the rename), and the loop must not
wait for it while a unit crashes. The text is made on the loop (a thread running Python would
hold the lock the loop needs for up to 5 ms); only the system calls run beside it. A write the
caller relies on at once (before a fork, before an exec in place, at exit) waits for every
write queued before it and for its own."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import psutil
import structlog

from ..engine.supervisor import Supervisor
from ..owner_mark import VARIABLE, unit_mark
from ..process_records import create_time, process_record, same_process
from ..spec import UnitSpec
from ..statedir import StateDir

log = structlog.get_logger()
WRITE_DELAY = 0.05  # seconds: a burst of changes is one write, never between a unit's exit and its new fork


class Records:
    def __init__(self, state: StateDir) -> None:
        self.state = state
        self._kept: dict[str, dict[str, Any]] = {}
        self._commands: dict[str, dict[str, Any]] = {}  # commands the daemon runs that are no unit
        self._serialised: dict[str, str] = {}  # name -> '"name": record' as JSON, made once per pid
        self._stale: set[str] | None = None  # units whose records may have changed (None: all)
        self._pending: asyncio.TimerHandle | None = None
        self._dirty = False
        self._failing = False  # touched by the writer thread only
        self._writer: ThreadPoolExecutor | None = None  # one thread: writes land in the order asked

    def write_log_dir(self, log_dir: str) -> None:
        self._write(self.state.log_dir_file, {"log_dir": log_dir})

    def write_daemon(self, record: dict[str, Any]) -> None:
        self._write(self.state.daemon_file, record)

    def changed(self, sup: Supervisor, name: str | None = None) -> None:
        """Write units.json soon (once for a burst of changes): the record of unit `name` looked
        at again (None: every unit's), the others' kept as they were."""
        if self._stale is not None:
            if name is None:
                self._stale = None
            else:
                self._stale.add(name)
        if not self._dirty:
            self._dirty = True
            self._pending = asyncio.get_running_loop().call_later(WRITE_DELAY, self._write_units_beside, sup)

    def expect(self, name: str, nonce: str, sup: Supervisor | None) -> None:
        """A command (a migration) about to be forked with `nonce` in its mark: in units.json
        before it exists, so a daemon that dies at any point after leaves it findable."""
        self._commands[name] = {"nonce": nonce, "kind": "command", "step": 1_000_000, "stop_timeout": 30.0}
        if sup is not None:
            self.write_units(sup)

    def track(self, name: str, pid: int, sup: Supervisor | None) -> None:
        """The command's pid, once forked: stopped first, never adopted."""
        self._commands[name] = {**self._commands.get(name, {}), **(process_record(pid) or {"pid": pid}),
                                "kind": "command", "step": 1_000_000, "stop_timeout": 30.0}
        if sup is not None:
            self.write_units(sup)

    def untrack(self, name: str, sup: Supervisor | None) -> None:
        if self._commands.pop(name, None) is not None and sup is not None:
            self.write_units(sup)

    def write_units(self, sup: Supervisor) -> None:
        """units.json as it is now (every unit looked at), on disk when this returns."""
        self._stale = None
        self._submit(self.state.units_file, self._units_text(sup)).result()

    def _write_units_beside(self, sup: Supervisor) -> None:
        """The burst's write: the loop goes on while the writer thread replaces the file."""
        self._submit(self.state.units_file, self._units_text(sup)).add_done_callback(_said_if_failed)

    def _units_text(self, sup: Supervisor) -> str:
        """The text of units.json: only the units that changed are looked at, only a new pid is
        looked up and serialised (a crash among 500 units: one record made, not 500 read)."""
        self._dirty = False
        stale, self._stale = self._stale, set()
        if stale is None:
            stale = set(self._kept) | set(sup.units)
        boot: float | None = None
        for name in stale:
            unit = sup.units.get(name)
            pid = unit.pid if unit is not None and unit.spec.argv else None
            kept = self._kept.get(name)
            if not pid:
                self._kept.pop(name, None)
                self._serialised.pop(name, None)
            elif not kept or kept["pid"] != pid:
                assert unit is not None and unit.spec.argv
                if boot is None:
                    boot = psutil.boot_time()
                record = {"pid": pid, "cmdline": list(unit.spec.argv), "step": unit.spec.step,
                          "stop_timeout": unit.spec.stop_timeout, "create_time": create_time(pid, boot)}
                self._kept[name], self._serialised[name] = record, f"{json.dumps(name)}: {json.dumps(record)}"
        commands = (f"{json.dumps(name)}: {json.dumps(r)}" for name, r in self._commands.items())
        return "{" + ", ".join([*self._serialised.values(), *commands]) + "}"

    def finish(self, sup: Supervisor) -> None:
        """At exit: keep units.json while any recorded process still lives."""
        if self._pending is not None:
            self._pending.cancel()
        self.write_units(sup)
        if self._writer is not None:
            self._writer.shutdown()
            self._writer = None
        self.state.remove(self.state.daemon_file)
        if not any(same_process(r) for r in self._kept.values()):
            self.state.remove(self.state.units_file)
        else:
            log.error("daemon.processes_left", units=sorted(self._kept))

    def _write(self, path: str, data: Any) -> None:
        self._submit(path, json.dumps(data)).result()

    def _submit(self, path: str, text: str) -> Future[None]:
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="synsup-records")
        return self._writer.submit(self._write_text, path, text)

    def _write_text(self, path: str, text: str) -> None:
        try:
            self.state.write_text(path, text)
            self._failing = False
        except OSError as e:
            if not self._failing:  # once per spell of failures, not per unit change
                print(f"synsup: cannot write {path}: {e.strerror}; supervising on", file=sys.stderr)
            self._failing = True


def _said_if_failed(write: Future[None]) -> None:
    """A write nobody waits for: what it failed of (other than the disk, said already) is logged."""
    if not write.cancelled() and (error := write.exception()) is not None:
        log.error("daemon.records_write_failed", error=repr(error))


def adoptable(state: StateDir, specs: list[UnitSpec], token: str | None) -> dict[str, int]:
    """Unit name -> pid of the processes an earlier daemon of this state dir started that a new
    one takes over: recorded (pid and start time), still running the command its spec says now,
    and not marked as anything else (a process whose environment shows no mark, as
    redis-server's once it retitles itself, is known by its record alone)."""
    records = state.read_json(state.units_file) or {}
    argv = {s.name: as_written(list(s.argv), state.config_dir) for s in specs if s.argv is not None}
    extra = {s.name: list(s.args_when_copied) for s in specs}
    if not isinstance(records, dict) or not token:
        return {}
    return {name: int(r["pid"]) for name, r in records.items()
            if isinstance(r, dict) and r.get("kind") != "command" and isinstance(r.get("cmdline"), list)
            and argv.get(name) == as_written(_without(r["cmdline"], extra.get(name, [])), state.config_dir)
            and same_process(r) and _mark_allows(int(r["pid"]), unit_mark(token, name))}


def stale_adopted(state: StateDir, adopted: Iterable[str], specs: Mapping[str, UnitSpec]) -> dict[str, str]:
    """The adopted units that do not run the config they would be given now, each with the first
    difference: a config file they were started with (a copy an earlier daemon made) differs from
    the one their spec reads (the files changed while no daemon ran). Compared argument by
    argument, files by content."""
    records = state.read_json(state.units_file) or {}
    found = {}
    for name in adopted:
        record = records.get(name) if isinstance(records, dict) else None
        if isinstance(record, dict):
            difference = _config_difference(list(record.get("cmdline") or []), list(specs[name].argv or []))
            if difference:
                found[name] = difference
    return found


def runs_spec(state: StateDir, name: str, pid: int, spec: UnitSpec) -> bool:
    """The recorded process `pid` of unit `name` was started with the config `spec` reads (its
    command argument by argument, its config files by content): an earlier daemon already gave
    it what a step would give it now."""
    records = state.read_json(state.units_file) or {}
    record = records.get(name) if isinstance(records, dict) else None
    return (isinstance(record, dict) and record.get("pid") == pid and spec.argv is not None
            and not _config_difference(list(record.get("cmdline") or []), list(spec.argv)))


def _config_difference(started: list[str], now: list[str]) -> str:
    if len(started) != len(now):
        return f"command {' '.join(started)} -> {' '.join(now)}"
    return next((f"{a} -> {b}" for a, b in zip(started, now) if a != b and not _same_file(a, b)), "")


def _same_file(a: str, b: str) -> bool:
    try:
        with open(a, "rb") as fa, open(b, "rb") as fb:
            return fa.read() == fb.read()
    except OSError:  # an earlier daemon's copy gone: what the process read is unknown
        return False


def as_written(argv: list[str], config_dir: str) -> list[str]:
    """A unit's command with its config files named as written, not where they were read: units read
    copies in the state dir (config/SERIAL/INDEX-NAME, daemon/config_snapshot.py), so a command
    compares by interpreter, options and config file names, whichever copy it read."""
    copies = config_dir.rstrip("/") + "/"
    def name(arg: str) -> str:
        if arg.startswith(copies):
            return os.path.basename(arg).split("-", 1)[-1]
        return os.path.basename(arg) if arg.startswith("/") else arg
    return argv[:1] + [name(a) for a in argv[1:]]


def _without(argv: list[str], tail: list[str]) -> list[str]:
    return argv[:-len(tail)] if tail and argv[-len(tail):] == tail else argv


def _mark_allows(pid: int, mark: str) -> bool:
    try:
        found = psutil.Process(pid).environ().get(VARIABLE)
    except (psutil.Error, OSError):
        return False
    return found is None or found == mark
