"""What a unit's whole process tree uses: resident memory, CPU time and open files, read with
psutil when asked (a scrape, `synsup status`), never on a timer.

A tree's members come from /proc/PID/task/PID/children (one small read per process, where
psutil's children() would scan all of /proc); psutil.Process objects are kept between reads,
so a pid is identified once and CPU% is measured from one read to the next."""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil

MIN_CPU_WINDOW = 1.0  # seconds: CPU% over a shorter window is noise; the last figure stands


@dataclass(frozen=True)
class Usage:
    rss_bytes: int
    cpu_seconds: float
    open_fds: int


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []
    except OSError:  # no CONFIG_PROC_CHILDREN: let psutil scan
        try:
            return [c.pid for c in psutil.Process(pid).children()]
        except psutil.Error:
            return []


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (at most 10,000), each found by its parent's children file."""
    pids: list[int] = []
    todo = [pid]
    while todo and len(pids) < 10000:
        current = todo.pop()
        pids.append(current)
        todo.extend(_children(current))
    return pids


class ResourceSampler:
    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}
        self._cpu: dict[int, tuple[float, float, float]] = {}  # root pid -> (when, cpu seconds, percent)
        self._seen: set[int] = set()

    def _process(self, pid: int) -> psutil.Process | None:
        proc = self._procs.get(pid)
        if proc is None:
            try:
                proc = self._procs[pid] = psutil.Process(pid)
            except psutil.Error:
                return None
        return proc

    def tree(self, pid: int) -> list[int]:
        return process_tree(pid)

    def usage(self, pid: int) -> Usage | None:
        """The tree's totals, or None when its root is gone."""
        rss, cpu, fds, alive = 0, 0.0, 0, False
        for member in self.tree(pid):
            self._seen.add(member)
            proc = self._process(member)
            if proc is None:
                continue
            try:  # without oneshot(): it reads more than these three need (50 against 42 us a process)
                times = proc.cpu_times()
                rss += proc.memory_info().rss
                fds += proc.num_fds()
                cpu += times.user + times.system + times.children_user + times.children_system
                alive = alive or member == pid
            except psutil.Error:
                self._procs.pop(member, None)
        return Usage(rss, cpu, fds) if alive else None

    def cpu_percent(self, pid: int, usage: Usage) -> float:
        """CPU% of the tree since the last call for this pid (at least MIN_CPU_WINDOW ago), or its
        average since the process started on the first call."""
        now = time.monotonic()
        last = self._cpu.get(pid)
        if last is not None and now - last[0] < MIN_CPU_WINDOW:
            return last[2]
        if last is not None:
            percent = max(0.0, (usage.cpu_seconds - last[1]) / (now - last[0]) * 100)
        else:
            proc = self._process(pid)
            age = time.time() - proc.create_time() if proc is not None else 0.0
            percent = usage.cpu_seconds / age * 100 if age > 0 else 0.0
        self._cpu[pid] = (now, usage.cpu_seconds, percent)
        return percent

    def prune(self) -> None:
        """After reading every unit: forget the processes that were in no tree."""
        for pid in set(self._procs) - self._seen:
            del self._procs[pid]
        for pid in set(self._cpu) - self._seen:
            del self._cpu[pid]
        self._seen = set()
