"""Starts that keep a core busy for seconds (`UnitSpec.cpu_bound_start`: Synapse importing its
code, about 2 s of CPU each) take turns for the machine's cores: one such start per core at once.

Why: eleven Synapse processes importing at once on 2 cores spent about a quarter more CPU
(caches and the scheduler churning among them) than two at a time, and were all ready later
(contrib/bench/vs_synctl.py prints both). A turn is held while the process computes: a start
that stops using its core (waiting for its database, or for main) gives its turn to the next
one at the next look, so no start ever waits on one that waits for it. A turn ends when the
unit leaves `starting` (ready, exited, stopped). Waiting starts go by step (a restart of main
before a reload's workers), then in the order they asked. Nothing is looked at while nobody
waits, and a start that finds the turns taken judges their holders on the spot: a crash
restart alone spawns at once. The cores are the CPU affinity's, or the cgroup's CPU quota."""

from __future__ import annotations

import asyncio
import math
import os
import time
from typing import TYPE_CHECKING

from ..proc_stat import TICKS, read_small, stat_fields
from .unit_state import UnitState

if TYPE_CHECKING:
    from .unit import Unit

LOOK_EVERY = 0.1  # seconds between two looks at the starts holding a turn, while others wait
STALE = 1.0  # seconds: a longer window since a turn was last looked at says nothing of now
BUSY_SHARE = 0.5  # share of the time a start ran or waited to run, above which it keeps its turn
HOLDING = (UnitState.WAITING, UnitState.STARTING)  # a turn is taken while waiting, kept while starting
CGROUP_FS = "/sys/fs/cgroup"


def machine_cores() -> int:
    """The cores this daemon may use: its CPU affinity, or fewer when its cgroup's CPU quota
    (cpu.max: Docker's --cpus, systemd's CPUQuota=) allows fewer."""
    try:
        cores = len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def _cgroup_quota(own: str = "/proc/self/cgroup", fs: str = CGROUP_FS) -> float | None:
    """Cores' worth of CPU time this process's cgroup (v2) may use, or None when unlimited."""
    try:
        with open(own) as f:
            path = next((line.strip().split(":", 2)[2] for line in f if line.startswith("0::")), None)
        if path is None:
            return None
        with open(f"{fs}{path.rstrip('/')}/cpu.max") as f:
            quota, period = f.read().split()
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def cpu_wanted_ns(pid: int) -> int | None:
    """The time every thread of `pid` ran or waited to run (ns: schedstat's first two fields, on
    a CPU and on a run queue; None once it is gone). What it wanted of the CPU, not what it got:
    two starts sharing one core each still count as computing. Where the kernel keeps no
    schedstat (all zero), the CPU time it got (/proc/PID/stat)."""
    total, found = 0, False
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in threads:
        try:
            ran, queued = read_small(f"/proc/{pid}/task/{tid}/schedstat").split()[:2]
            total += int(ran) + int(queued)
            found = True
        except (OSError, ValueError):
            pass
    if not found:
        return None
    if total == 0:
        fields = stat_fields(pid)
        if fields is None:
            return None
        total = (int(fields[11]) + int(fields[12])) * 1_000_000_000 // TICKS
    return total


def running_now(pid: int) -> bool:
    """Whether the process's main thread is on a CPU or waiting for one (state R)."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] == b"R"


class _Turn:
    __slots__ = ("pid", "at", "cpu", "busy")

    def __init__(self) -> None:
        self.pid: int | None = None
        self.at, self.cpu = 0.0, 0
        self.busy = True  # until judged otherwise: a process just spawned is starting to compute

    def judge(self, now: float) -> None:
        """Busy over the window since the last judgement; after a long quiet (no look while
        nobody waited), by what it does now."""
        if self.pid is None:
            return
        cpu = cpu_wanted_ns(self.pid)
        if cpu is None:
            self.busy = False  # gone: its exit ends the turn
            return
        window = now - self.at
        if window < LOOK_EVERY / 2:
            return  # too short a window to judge
        self.busy = running_now(self.pid) if window > STALE else (cpu - self.cpu) / 1e9 / window >= BUSY_SHARE
        self.at, self.cpu = now, cpu


class StartCores:
    __slots__ = ("cores", "_turns", "_queue", "_asked", "_timer")

    def __init__(self, cores: int | None = None) -> None:
        self.cores = cores or machine_cores()
        self._turns: dict[Unit, _Turn] = {}
        self._queue: list[tuple[int, int, Unit, asyncio.Future[None]]] = []  # (step, order asked, ...), sorted
        self._asked = 0
        self._timer: asyncio.TimerHandle | None = None

    def computing(self) -> list[Unit]:
        """The starts holding a turn that computed at the last look (or were not looked at yet)."""
        return [unit for unit, turn in self._turns.items() if turn.busy]

    def waiting(self) -> int:
        return sum(1 for *_, future in self._queue if not future.done())

    def idle(self) -> bool:
        """No turn held, nobody waiting, no timer: nothing left behind."""
        return not self._turns and not self._queue and self._timer is None

    def take(self, unit: Unit) -> bool:
        """`unit`'s turn, if it may spawn at once: fewer starts than cores compute (judged now,
        when they seem not to), and nobody of its step or an earlier one waits."""
        if len(self.computing()) >= self.cores:
            now = time.monotonic()
            for turn in self._turns.values():
                turn.judge(now)
        step = unit.spec.step
        if len(self.computing()) >= self.cores or any(s <= step and not f.done() for s, _, _, f in self._queue):
            return False
        self._turns[unit] = _Turn()
        return True

    async def wait_turn(self, unit: Unit) -> None:
        """Until `unit` has its turn: after those of earlier steps (main before the workers; a
        restart of main is not queued behind a reload's workers), then in the order asked."""
        future = asyncio.get_running_loop().create_future()
        self._asked += 1
        self._queue.append((unit.spec.step, self._asked, unit, future))
        self._queue.sort(key=lambda entry: entry[:2])
        self._look_soon()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(unit)  # granted as the wait was cancelled
            raise
        finally:
            self._queue = [entry for entry in self._queue if entry[3] is not future]
            if not self.waiting():
                self._stop_looking()

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
        while self._queue and len(self.computing()) < self.cores:
            *_, unit, future = self._queue.pop(0)
            if not future.done():
                self._turns[unit] = _Turn()
                future.set_result(None)
        if not self.waiting():
            self._stop_looking()

    def _look_soon(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(LOOK_EVERY, self._look)

    def _stop_looking(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _look(self) -> None:
        """Which turns' processes computed since the last look; a turn idle since gives way."""
        self._timer = None
        now = time.monotonic()
        for turn in self._turns.values():
            turn.judge(now)
        self._grant()
        if self.waiting():
            self._look_soon()

    def close(self) -> None:
        self._stop_looking()
        for *_, future in self._queue:
            future.cancel()
        self._queue.clear()
        self._turns.clear()
