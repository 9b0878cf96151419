"""Failure hooks (`--on-failure CMD`): shell commands run when a unit is crash-looping, fails
or recovers, or a reload is rejected or partial. Each run is a task of its own, so the daemon
never waits for one; it gets 30 s, its output goes to the daemon's log, and an event of a unit
(or of the reloads) fires at most once a minute.
A hook gets a clean environment as a unit does, plus the SYNSUP_* variables and a hook mark (never a
unit's: `synsup stop` never takes what a hook started for a unit); when its run ends or times out,
everything it started is killed: its group, and whatever left it still carrying the run's mark."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any

import psutil
import structlog

from ..engine.environment import unit_environment
from ..engine.process import REAPER
from ..owner_mark import VARIABLE, find_ours, hook_mark

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
        self._token = os.urandom(16).hex()  # marks this daemon's hook runs, to find what they leave

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
        env = {**unit_environment((), None), "SYNSUP_UNIT": unit or "", "SYNSUP_EVENT": event,
               "SYNSUP_ERROR": error or "", "SYNSUP_HOST": socket.gethostname()}
        for command in self.commands:
            self.runs += 1
            run_env = {**env, VARIABLE: hook_mark(self._token, self.runs)}
            task = asyncio.get_running_loop().create_task(self._run(command, run_env, unit, event))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        return True

    async def _run(self, command: str, env: dict[str, str], unit: str | None, event: str) -> None:
        bound = log.bind(unit=unit, hook_event=event, command=command)
        try:
            proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, env=env, start_new_session=True)
        except OSError as e:
            bound.error("hook.spawn_failed", error=str(e))
            return
        self._pgids.add(proc.pid)
        REAPER.waited.add(proc.pid)  # proc.wait() takes its exit status, never the reaper
        try:
            async with asyncio.timeout(self.time_limit):
                await _exit_of(proc.pid)  # its end, not EOF on the pipe (which what it started may hold)
        except TimeoutError:
            bound.error("hook.timed_out", pid=proc.pid, limit=self.time_limit)
        finally:
            _kill_group(proc.pid)  # anything it left running in its session
            self._pgids.discard(proc.pid)
            await asyncio.to_thread(self._kill_escaped, env[VARIABLE].rsplit("/", 1)[1])
            code = proc.wait()
            REAPER.waited.discard(proc.pid)
        assert proc.stdout is not None
        with proc.stdout:
            self._log_output(bound, await asyncio.to_thread(_read_output, proc.stdout.fileno()))
        bound.info("hook.done", pid=proc.pid, code=code)

    @staticmethod
    def _log_output(bound: Any, output: bytes) -> None:
        for line in output[-MAX_OUTPUT:].decode(errors="replace").splitlines():
            bound.info("hook.output", line=line)

    def _kill_escaped(self, run: str | None) -> None:
        """What the run started in a session of its own (reparented to us, the subreaper, once
        its parent exits): every descendant of this daemon that still carries the run's mark
        (any run's, when `run` is None)."""
        me = psutil.Process()
        found = find_ours(self._token, {(me.pid, me.create_time())}, kinds=("hook",))
        for pid, marked in found.items():
            if run is None or marked.unit == run:
                REAPER.leftovers.add(pid)  # our child once its parent is gone: reaped when it dies
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass

    def close(self) -> None:
        """Stop the runs still going (the daemon is stopping)."""
        for pgid in list(self._pgids):
            _kill_group(pgid)
        if self._pgids:
            self._kill_escaped(None)
        for task in list(self._running):
            task.cancel()


async def _exit_of(pid: int) -> None:
    """Returns when the process has exited (a pidfd becomes readable); it is not reaped."""
    loop, fd = asyncio.get_running_loop(), os.pidfd_open(pid)
    exited = loop.create_future()
    loop.add_reader(fd, lambda: None if exited.done() else exited.set_result(None))
    try:
        await exited
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def _read_output(fd: int, wait: float = 1.0) -> bytes:
    """What the hook wrote, up to EOF or `wait` seconds (a process it deliberately left may hold the pipe)."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0 and select.select([fd], [], [], left)[0]:
        chunk = os.read(fd, MAX_OUTPUT)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)[-MAX_OUTPUT:]


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
