"""Failure hooks (`--on-failure CMD`): shell commands run when a unit is crash-looping, fails
or recovers, or a reload is rejected or partial. Each run is a task of its own, so the daemon
never waits for one; it gets 30 s, its output goes to the daemon's log, and an event of a unit
(or of the reloads) fires at most once a minute."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

import structlog

TIME_LIMIT = 30.0
MIN_INTERVAL = 60.0  # seconds between two runs for the same unit
RELOAD_KEY = "(reload)"
MAX_OUTPUT = 64 * 1024

log = structlog.get_logger()


class FailureHooks:
    def __init__(self, commands: list[str], clock: Callable[[], float] | None = None,
                 time_limit: float = TIME_LIMIT, min_interval: float = MIN_INTERVAL) -> None:
        self.commands = list(commands)
        self.clock = clock or time.monotonic
        self.time_limit, self.min_interval = time_limit, min_interval
        self._last: dict[str, float] = {}
        self._running: set[asyncio.Task] = set()
        self._pgids: set[int] = set()
        self.runs = 0

    def fire(self, event: str, unit: str | None, error: str | None) -> bool:
        """Run every command for this event, unless it fired for the unit less than a minute ago."""
        if not self.commands:
            return False
        key, now = f"{unit or RELOAD_KEY} {event}", self.clock()  # crash-looping leaves failed its run
        last = self._last.get(key)
        if last is not None and now - last < self.min_interval:
            log.info("hook.suppressed", unit=unit, hook_event=event, seconds_since_last=round(now - last, 1))
            return False
        self._last[key] = now
        env = {**os.environ, "SYNSUP_UNIT": unit or "", "SYNSUP_EVENT": event, "SYNSUP_ERROR": error or "",
               "SYNSUP_HOST": socket.gethostname()}
        env.pop("NOTIFY_SOCKET", None)
        for command in self.commands:
            task = asyncio.get_running_loop().create_task(self._run(command, env, unit, event))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        return True

    async def _run(self, command: str, env: dict[str, str], unit: str | None, event: str) -> None:
        bound = log.bind(unit=unit, hook_event=event, command=command)
        try:
            proc = await asyncio.create_subprocess_shell(
                command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, env=env, start_new_session=True)
        except OSError as e:
            bound.error("hook.spawn_failed", error=str(e))
            return
        self.runs += 1
        self._pgids.add(proc.pid)
        try:
            async with asyncio.timeout(self.time_limit):
                output, _ = await proc.communicate()
            self._log_output(bound, output)
            bound.info("hook.done", pid=proc.pid, code=proc.returncode)
        except TimeoutError:
            _kill_group(proc.pid)
            await proc.wait()
            bound.error("hook.timed_out", pid=proc.pid, limit=self.time_limit)
        finally:
            _kill_group(proc.pid)  # anything it left running in its session
            self._pgids.discard(proc.pid)

    @staticmethod
    def _log_output(bound: Any, output: bytes) -> None:
        for line in output[-MAX_OUTPUT:].decode(errors="replace").splitlines():
            bound.info("hook.output", line=line)

    def close(self) -> None:
        """Stop the runs still going (the daemon is stopping)."""
        for pgid in list(self._pgids):
            _kill_group(pgid)
        for task in list(self._running):
            task.cancel()


_active: FailureHooks | None = None  # the running daemon's hooks, for fire() below


def activate(hooks: FailureHooks | None) -> None:
    global _active
    _active = hooks


def fire(event: str, unit: str | None, error: str | None) -> bool:
    """Run the running daemon's failure hooks (events: failed, reload_rejected, reload_partial,
    upgrade_partial, ...); False when there are none or the unit fired within the minute."""
    return _active.fire(event, unit, error) if _active is not None else False


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
