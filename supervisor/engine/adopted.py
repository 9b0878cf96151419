"""A unit's process that an earlier daemon of this state dir started, supervised from now on.

It is not our child (its parent died; init, or the nearest subreaper, reaps it), so its exit is
learned from a pidfd and its exit status is unknown. Its output goes on into its log file, which
it writes itself. Found by its record (pid and start time) and the private owner mark."""

from __future__ import annotations

import asyncio
import os

import psutil
import structlog

from ..owner_mark import unit_of
from .process import Child
from .reaper import REAPER, kill

log = structlog.get_logger()


class AdoptedChild(Child):
    def __init__(self, pid: int, name: str, token: str | None) -> None:  # no Popen: not started here
        self.pid, self.name, self.token = pid, name, token
        self.killed_after: float | None = None
        self._loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[int | None] = self._loop.create_future()
        self._waiters: list[asyncio.Future[int | None]] = []
        self._pidfd = os.pidfd_open(pid)
        self._loop.add_reader(self._pidfd, self._on_exit)
        self._out = None
        REAPER.leaders[pid] = self  # our child after a re-exec: reaped here, never by the reaper

    def kill_leftovers(self) -> None:
        """SIGKILL its group, every marked descendant that came back to us (the subreaper), and
        every marked descendant still below it (those that left it while no daemon ran were
        reparented elsewhere and are out of reach)."""
        super().kill_leftovers()
        try:
            below = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            below = []
        for proc in below:
            try:
                if unit_of(proc.environ(), self.token) == self.name:
                    kill(proc.pid)
            except (psutil.Error, OSError):
                pass

    def _on_exit(self) -> None:
        self.kill_leftovers()
        self._finish(self._status())

    def _status(self) -> int | None:
        """Its exit code if it is our child (we re-executed ourselves), else None (unknown)."""
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return None
        return os.waitstatus_to_exitcode(status) if pid else None

    def _finish(self, returncode: int | None = None) -> None:
        if not self._exited.done():
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            REAPER.leaders.pop(self.pid, None)
            self._exit_is(returncode)

    def force_close(self) -> None:
        if not self._exited.done():
            self.kill_leftovers()
            REAPER.leftovers.add(self.pid)
            self._finish()

    def _close_output(self) -> None:
        pass
