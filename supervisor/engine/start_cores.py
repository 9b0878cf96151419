"""Starts that keep a core busy for seconds (`UnitSpec.cpu_bound_start`: Synapse importing its
code, about 2 s of CPU each) take turns for the machine's cores: one such start per core at once.

Why: eleven Synapse processes importing at once on 2 cores spent about a quarter more CPU
(caches and the scheduler churning among them) than two at a time, and were all ready later
(contrib/bench/vs_synctl.py prints both). A turn is held while the process computes: a start
that stops using its core (waiting for its database, or for main) gives its turn to the next
one at the next look, so no start ever waits on one that waits for it. A turn ends when the
unit leaves `starting` (ready, exited, stopped). Nothing is looked at while nobody waits: a
crash restart alone takes its turn at once."""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from typing import TYPE_CHECKING

from .unit_state import UnitState

if TYPE_CHECKING:
    from .unit import Unit

LOOK_EVERY = 0.1  # seconds between two looks at the CPU of the starts holding a turn, while others wait
BUSY_SHARE = 0.5  # share of a core over the last look above which a start keeps its turn
HOLDING = (UnitState.WAITING, UnitState.STARTING)  # a turn is taken while waiting, kept while starting


def machine_cores() -> int:
    """The cores this daemon may run on (its CPU affinity, as a cgroup's cpuset sets it)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_wanted_ns(pid: int) -> int | None:
    """The time every thread of `pid` ran or waited to run (ns: schedstat's first two fields, on
    a CPU and on a run queue; None once it is gone). What it wanted of the CPU, not what it got:
    two starts sharing one core each still count as computing."""
    total, found = 0, False
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f:
                ran, queued = f.read().split()[:2]
            total += int(ran) + int(queued)
            found = True
        except (OSError, ValueError):
            pass
    return total if found else None


class _Turn:
    __slots__ = ("pid", "at", "cpu", "busy")

    def __init__(self) -> None:
        self.pid: int | None = None
        self.at, self.cpu = 0.0, 0
        self.busy = True  # until a look says otherwise: a process just spawned is starting to compute


class StartCores:
    __slots__ = ("cores", "_turns", "_queue", "_timer")

    def __init__(self, cores: int | None = None) -> None:
        self.cores = cores or machine_cores()
        self._turns: dict[Unit, _Turn] = {}
        self._queue: deque[tuple[Unit, asyncio.Future[None]]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def computing(self) -> int:
        """Starts holding a turn that used their core over the last look (or were not looked at yet)."""
        return sum(1 for turn in self._turns.values() if turn.busy)

    def free(self) -> bool:
        """Whether a start asking now has its turn at once."""
        return not self.waiting() and self.computing() < self.cores

    def waiting(self) -> int:
        return sum(1 for _, future in self._queue if not future.done())

    def take(self, unit: Unit) -> bool:
        """`unit`'s turn, if it may spawn at once: fewer starts than cores compute, nobody waits."""
        if not self.free():
            return False
        self._turns[unit] = _Turn()
        return True

    async def wait_turn(self, unit: Unit) -> None:
        """Until `unit` has its turn (after those that asked before it)."""
        future = asyncio.get_running_loop().create_future()
        self._queue.append((unit, future))
        self._look_soon()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(unit)  # granted as the wait was cancelled
            raise
        finally:
            self._queue = deque((u, f) for u, f in self._queue if f is not future)

    def changed(self, unit: Unit) -> None:
        """A unit changed (a Supervisor listener): a turn ends when its unit leaves starting."""
        turn = self._turns.get(unit)
        if turn is None:
            return
        if unit.state not in HOLDING:
            self.release(unit)
        elif turn.pid is None and unit.pid is not None:
            turn.pid, turn.at, turn.cpu = unit.pid, time.monotonic(), cpu_wanted_ns(unit.pid) or 0

    def release(self, unit: Unit) -> None:
        if self._turns.pop(unit, None) is not None:
            self._grant()

    def _grant(self) -> None:
        while self._queue and self.computing() < self.cores:
            unit, future = self._queue.popleft()
            if not future.done():
                self._turns[unit] = _Turn()
                future.set_result(None)
        if not self.waiting() and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _look_soon(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(LOOK_EVERY, self._look)

    def _look(self) -> None:
        """Which turns' processes computed since the last look; a turn idle since gives way."""
        self._timer = None
        now = time.monotonic()
        for turn in self._turns.values():
            if turn.pid is None:
                continue
            cpu = cpu_wanted_ns(turn.pid)
            if cpu is None:
                turn.busy = False  # gone: its exit ends the turn
                continue
            if now - turn.at < LOOK_EVERY / 2:
                continue  # spawned just now: too short a window to judge
            turn.busy = (cpu - turn.cpu) / 1e9 / (now - turn.at) >= BUSY_SHARE
            turn.at, turn.cpu = now, cpu
        self._grant()
        if self.waiting():
            self._look_soon()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
