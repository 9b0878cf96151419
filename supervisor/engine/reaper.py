"""Every child the daemon gains, it reaps. The daemon is a child subreaper: descendants of its
units whose parents exit are reparented to it, and each one that exits is a zombie until it is
waited for. Exit statuses that others wait for are never stolen: a unit's leader (its `Child`
reaps it after its pidfd fires: `leaders`), and what the daemon runs itself (hooks, commands,
validation: subprocess and asyncio wait for those). What the daemon runs in a session of its own
is in `waited` from its fork on (`spawning()` covers the fork until then); what it runs in its
own session cannot be a unit's (a process can only leave a session for a new one), so it is
left alone. Every other zombie child is reaped: whatever a unit's descendants did (setsid,
double forks), and leftovers the daemon killed."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import psutil
import structlog

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
        self._spawning = 0  # own spawns in a session of their own, forked but not yet in `waited`
        self._deferred = False  # a session leader's zombie left for after them
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

    @contextmanager
    def spawning(self) -> Iterator[None]:
        """Around an own spawn in a session of its own until its pid is in `waited`: a session
        leader's zombie meanwhile may be that spawn, and is left for the look after it."""
        self._spawning += 1
        try:
            yield
        finally:
            self._spawning -= 1
            if not self._spawning and self._deferred:
                self._deferred = False
                self.reap_soon()

    def reap(self) -> None:
        """On SIGCHLD: collect every exited child that is ours to collect. Most signals are a
        unit's exit, its leader reaped by its Child already: one system call then says no child
        is a zombie, and no child list (500 pids with 500 units) is read."""
        if not self.leftovers and not _zombie_child():
            return
        children = direct_children()
        for pid in children:
            if pid not in self.leaders and pid not in self.waited:
                self._look_at(pid)
        for pid in list(self.leftovers):
            if pid not in children or self._collect(pid):
                self.leftovers.discard(pid)

    def _look_at(self, pid: int) -> None:
        stat = _stat(pid)
        if stat is None or stat[0] != "Z":
            return
        session = stat[1]
        if session == self.session and pid not in self.leftovers:
            return  # run by the daemon itself (in a thread: subprocess waits for it)
        if session == pid and self._spawning:
            self._deferred = True
            return
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


def _zombie_child() -> bool:
    """Some child of ours has exited and is not reaped yet (none is reaped by asking)."""
    try:
        info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return info is not None and info.si_pid != 0


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, session id) from /proc/PID/stat; a zombie keeps both."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return fields[0].decode(), int(fields[3])
    except (OSError, IndexError, ValueError):
        return None


def direct_children() -> list[int]:
    pids: list[int] = []
    try:
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as f:
                pids += [int(p) for p in f.read().split()]
    except OSError:
        pids = [p.pid for p in psutil.Process().children()]
    return pids
