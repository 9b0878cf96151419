"""The daemon: a Supervisor, its control socket, its signals, its records in the state dir."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import time
from collections.abc import Callable
from typing import Any

import structlog

from . import systemd
from .actions import Action
from .control import ControlServer, Send
from .engine import Supervisor
from .notify import SystemdNotifier
from .reloads import Reloads
from .source import Loaded
from .state import UnitState
from .statedir import StateDir, process_record
from .status import daemon_status, unit_status
from .unit import Timing, Unit


def _raise_fd_limit() -> None:
    """Each unit holds a pipe, a notify socket and a pidfd: lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Daemon:
    def __init__(self, loaded: Loaded, state: StateDir, log_dir: str,
                 reloader: Callable[[], Loaded] | None = None,
                 planner: Callable[[Loaded, Loaded], list[Action]] | None = None,
                 timing: Timing | None = None, notifier: SystemdNotifier | None = None) -> None:
        self.state, self.log_dir = state, log_dir
        self.current = loaded
        self.reloads = Reloads(self, reloader, planner)
        self.timing = timing
        self.notifier = notifier or SystemdNotifier(None)
        self.supervisor: Supervisor | None = None
        self.config_generation = 1
        self.extra_status: dict[str, Any] = {"reload_error": None, "last_reload": None}
        self._stop = asyncio.Event()
        self._stopped = asyncio.Event()
        self._records_dirty = False
        self._records: dict[str, dict[str, Any]] = {}
        self.log = structlog.get_logger()

    # -- lifecycle
    async def run(self) -> int:
        _raise_fd_limit()
        self.state.create()
        os.makedirs(self.log_dir, exist_ok=True)
        self.state.write_json(self.state.daemon_file, {**(process_record(os.getpid()) or {}), "log_dir": self.log_dir})
        sup = self.supervisor = Supervisor(
            self.current.specs, log_dir=self.log_dir, notify_dir=self.state.notify_dir, timing=self.timing)
        sup.add_listener(self._unit_changed)
        server = ControlServer(self.state.socket, self.handle)
        await server.start()
        self._install_signals()
        self.log.info("daemon.started", pid=os.getpid(), units=len(sup.units))
        try:
            async with asyncio.TaskGroup() as group:
                sup.spawn_tasks(group)
                sup.start_all()
                helpers = [group.create_task(self._announce()), *self.reloads.tasks(group, self._stop)]
                keepalive = self._systemd_tasks(group)
                await self._stop.wait()
                self.notifier.send(STOPPING=1, STATUS="stopping")
                for task in helpers:
                    task.cancel()
                await sup.stop_all()
                for task in keepalive:
                    task.cancel()
                sup.cancel_tasks()
        finally:
            self._stopped.set()
            server.close()
            sup.close()
            self._write_records()
            self.state.remove(self.state.daemon_file, self.state.units_file)
            self.log.info("daemon.stopped")
        return 0

    def _systemd_tasks(self, group: asyncio.TaskGroup) -> list[asyncio.Task]:
        if self.notifier.address is None:
            return []
        tasks = [group.create_task(systemd.extend_start(self.notifier, systemd.start_timeout(), self._main_starting))]
        interval = systemd.watchdog_interval()
        if interval:
            tasks.append(group.create_task(systemd.watchdog(self.notifier, interval)))
        return tasks

    def _main_starting(self) -> bool:
        main = self.supervisor.units.get("main") if self.supervisor else None
        return self.supervisor is not None and self.supervisor.state == "starting" and \
            main is not None and main.state in (UnitState.WAITING, UnitState.STARTING, UnitState.BACKOFF)

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reloads.request)

    async def _announce(self) -> None:
        sup = self.supervisor
        assert sup is not None
        self.notifier.send(STATUS="starting")
        await sup.wait_until(sup.all_ready)
        sup.state = "running"
        self.log.info("daemon.ready", units=len(sup.units))
        self.notifier.send(READY=1, STATUS=self.status_line())

    def status_line(self) -> str:
        units = list(self.supervisor.units.values()) if self.supervisor else []
        ready = sum(u.state is UnitState.READY for u in units)
        others = [f"{u.spec.name} in {u.state.value}" for u in units
                  if u.state not in (UnitState.READY, UnitState.WAITING)]
        main = self.supervisor.units.get("main") if self.supervisor else None
        line = f"{ready}/{len(units)} ready"
        if main is not None and main.state is UnitState.STARTING:
            line = f"starting main (database migration may take a while); {line}"
        return line + ("; " + ", ".join(others[:3]) if others and ready < len(units) else "")

    # -- records of our processes, so a later daemon can tell if they still run
    def _unit_changed(self, unit: Unit) -> None:
        if self.notifier.address:
            self.notifier.send(STATUS=self.status_line())
        if not self._records_dirty:
            self._records_dirty = True
            asyncio.get_running_loop().call_soon(self._write_records)

    def _write_records(self) -> None:
        self._records_dirty = False
        if self.supervisor is None:
            return
        records = {}
        for name, unit in self.supervisor.units.items():
            if unit.pid and unit.spec.argv:
                kept = self._records.get(name)
                records[name] = kept if kept and kept["pid"] == unit.pid else {
                    "pid": unit.pid, "cmdline": list(unit.spec.argv),
                    "create_time": (process_record(unit.pid) or {}).get("create_time")}
        self._records = records  # only a new pid costs a look-up of its start time
        self.state.write_json(self.state.units_file, records)

    # -- requests
    def status(self, names: list[str] | None = None) -> dict[str, Any]:
        sup = self.supervisor
        assert sup is not None
        now = time.time()
        units = [unit_status(u, now) for n, u in sup.units.items() if not names or n in names]
        extra = {"config_generation": self.config_generation, **self.extra_status}
        return {"ok": True, "daemon": daemon_status(os.getpid(), sup.state, extra), "units": units}

    async def handle(self, request: dict[str, Any], send: Send) -> None:
        command = request.get("cmd")
        handler = getattr(self, f"_cmd_{command}", None) if isinstance(command, str) else None
        if handler is None:
            await send({"ok": False, "error": f"unknown request {command!r}"})
            return
        await handler(request, send)

    async def _cmd_status(self, request: dict[str, Any], send: Send) -> None:
        await send(self.status(request.get("units") or None))

    async def _cmd_watch(self, request: dict[str, Any], send: Send) -> None:
        """The status, then every unit change, until the client hangs up or the daemon stops."""
        sup = self.supervisor
        assert sup is not None
        queue: asyncio.Queue[Unit] = asyncio.Queue()
        sup.add_listener(queue.put_nowait)
        try:
            await send(self.status())
            while not self._stopped.is_set():
                unit = await queue.get()
                await send({"ok": True, "unit": unit_status(unit, time.time()), "daemon_state": sup.state})
        finally:
            sup.remove_listener(queue.put_nowait)

    async def _cmd_stop(self, request: dict[str, Any], send: Send) -> None:
        await send({"ok": True, "stopping": True})
        self._stop.set()
        await self._stopped.wait()
        await send({"ok": True, "stopped": True})

    async def _cmd_restart(self, request: dict[str, Any], send: Send) -> None:
        sup = self.supervisor
        assert sup is not None
        names = [str(n) for n in request.get("units") or []]
        unknown = [n for n in names if n not in sup.units]
        if unknown:
            await send({"ok": False, "error": f"no unit named {', '.join(unknown)}; units: {', '.join(sup.units)}"})
            return
        await sup.restart(names)
        await send(self.status(names or None))

    async def _cmd_reload(self, request: dict[str, Any], send: Send) -> None:
        await send(await self.reloads.request_and_wait())
