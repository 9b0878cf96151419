"""Every child the daemon gains, it reaps. The daemon is a child subreaper: descendants of its
units whose parents exit are reparented to it, and each one that exits is a zombie until it is
waited for. Exit statuses that others wait for are never stolen: a unit's leader (its `Child`
reaps it after its pidfd fires), and what the daemon runs itself (hooks, commands, validation:
subprocess and asyncio wait for those). A zombie child is reaped when it came from a unit: not a
session leader and not in the daemon's own session (units run in sessions of their own), or a
session leader seen alive with a unit's mark, or a leftover the daemon killed."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any, Protocol

import psutil
import structlog

from ..owner_mark import unit_of

log = structlog.get_logger()
REAP_AFTER = 0.05  # seconds from a SIGCHLD to the look at every child: once for a burst, after any respawn


class Leader(Protocol):
    def kill_leftovers(self) -> None: ...

    def kill_escaped(self) -> None: ...


class Reaper:
    def __init__(self) -> None:
        self.leaders: dict[int, Any] = {}  # pid -> Child: units' leaders, reaped by their Child
        self.leftovers: set[int] = set()  # killed by us, reaped when they exit
        self.waited: set[int] = set()  # our own children that someone else waits for
        self.token: str | None = None
        self.session = os.getsid(0)
        self._classified: dict[int, bool] = {}  # session leaders among our children: from a unit?
        self._pending: asyncio.TimerHandle | None = None
        self.escaped_due: set[Leader] = set()  # exited leaders whose look for escaped descendants is due
        self.reaped = 0

    def reap_soon(self) -> None:
        """On SIGCHLD: reap a moment later, once for a burst of signals. A unit's own exit is
        handled by its Child (pidfd) at once; its respawn never waits for this look at every child."""
        if self._pending is None:
            self._pending = asyncio.get_running_loop().call_later(REAP_AFTER, self._reap_now)

    def _reap_now(self) -> None:
        self._pending = None
        self.reap()

    def reap(self) -> None:
        """On SIGCHLD: collect every exited child that is ours to collect."""
        children = direct_children()
        for pid in children:
            if pid not in self.leaders and pid not in self.waited:
                self._look_at(pid)
        self._classified = {p: v for p, v in self._classified.items() if p in children}
        for pid in list(self.leftovers):
            if pid not in children or self._collect(pid):
                self.leftovers.discard(pid)

    def _look_at(self, pid: int) -> None:
        stat = _stat(pid)
        if stat is None:
            return
        state, session = stat
        if state != "Z":
            if session == pid and pid not in self._classified:
                self._classified[pid] = _carries_unit_mark(pid, self.token)
            return
        from_unit = session not in (pid, self.session) or self._classified.get(pid, False)
        if from_unit or pid in self.leftovers:
            self._collect(pid)

    def _collect(self, pid: int) -> bool:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return True
        if done:
            self.reaped += 1
            self.leftovers.discard(pid)
        return bool(done)

    def kill_all(self) -> None:
        """Last resort at daemon exit: every leader's group and every leftover, SIGKILLed and reaped."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        for exited in list(self.escaped_due):
            exited.kill_escaped()
        for child in list(self.leaders.values()):
            child.kill_leftovers()
        for pid in list(self.leaders) + list(self.leftovers):
            kill(pid)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        self.leaders.clear()
        self.leftovers.clear()


REAPER = Reaper()


def kill(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, session id) from /proc/PID/stat; a zombie keeps both."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return fields[0].decode(), int(fields[3])
    except (OSError, IndexError, ValueError):
        return None


def _carries_unit_mark(pid: int, token: str | None) -> bool:
    try:
        return unit_of(psutil.Process(pid).environ(), token) is not None
    except (psutil.Error, OSError):
        return False


def direct_children() -> list[int]:
    pids: list[int] = []
    try:
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as f:
                pids += [int(p) for p in f.read().split()]
    except OSError:
        pids = [p.pid for p in psutil.Process().children()]
    return pids
