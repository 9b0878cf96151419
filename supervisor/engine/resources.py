"""What a unit's whole process tree uses: resident memory, CPU time and open files, read
from /proc when asked (a scrape, `synsup status`), never on a timer.

One pass per process: /proc/PID/stat (CPU times, its children's, RSS) and the size of
/proc/PID/fd (its count of open files since Linux 6.2; its names before); a tree's members come
from /proc/PID/task/PID/children. Files are read with bare os.open/os.read: Python's file
objects were a third of a scrape's CPU. psutil read three files per process and kept an object
per pid."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import psutil

MIN_CPU_WINDOW = 1.0  # seconds: CPU% over a shorter window is noise; the last figure stands
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Usage:
    rss_bytes: int
    cpu_seconds: float
    open_fds: int


def read_small(path: str) -> bytes:
    """A small /proc file's content: one open, one read, one close (no file object)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


def _children(pid: int) -> list[int]:
    try:
        data = read_small(f"/proc/{pid}/task/{pid}/children")
    except FileNotFoundError:
        return []
    except OSError:  # no CONFIG_PROC_CHILDREN: let psutil scan
        try:
            return [c.pid for c in psutil.Process(pid).children()]
        except psutil.Error:
            return []
    return [int(p) for p in data.split()] if data else []


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (at most 10,000), each found by its parent's children file."""
    pids: list[int] = []
    todo = [pid]
    while todo and len(pids) < 10000:
        current = todo.pop()
        pids.append(current)
        todo.extend(_children(current))
    return pids


def stat_fields(pid: int) -> list[bytes] | None:
    """/proc/PID/stat's fields after the command name (its state first), or None once it is gone."""
    try:
        return read_small(f"/proc/{pid}/stat").rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _stat(pid: int) -> tuple[float, int, float] | None:
    """(CPU seconds incl. reaped children, RSS bytes, start time in seconds since boot)."""
    fields = stat_fields(pid)
    if fields is None:
        return None
    cpu = sum(int(x) for x in fields[11:15]) / TICKS  # utime stime cutime cstime
    return cpu, int(fields[21]) * PAGE, int(fields[19]) / TICKS


def _open_fds(pid: int) -> int:
    """The size of /proc/PID/fd (Linux 6.2 and later: the count of open files; one stat call), or
    its entries counted where the size says nothing (0)."""
    try:
        return os.stat(f"/proc/{pid}/fd").st_size or len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


class ResourceSampler:
    def __init__(self) -> None:
        self._cpu: dict[int, tuple[float, float, float]] = {}  # root pid -> (when, cpu seconds, percent)
        self._started: dict[int, float] = {}  # root pid -> start time, seconds since boot
        self._seen: set[int] = set()

    def tree(self, pid: int) -> list[int]:
        return process_tree(pid)

    def usage(self, pid: int) -> Usage | None:
        """The tree's totals, or None when its root is gone."""
        rss, cpu, fds, alive = 0, 0.0, 0, False
        for member in self.tree(pid):
            stat = _stat(member)
            if stat is None:
                continue
            cpu += stat[0]
            rss += stat[1]
            fds += _open_fds(member)
            if member == pid:
                alive = True
                self._started[pid] = stat[2]
        if alive:
            self._seen.add(pid)
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
            age = _uptime() - self._started.get(pid, _uptime())
            percent = usage.cpu_seconds / age * 100 if age > 0 else 0.0
        self._cpu[pid] = (now, usage.cpu_seconds, percent)
        return percent

    def prune(self) -> None:
        """After reading every unit: forget the processes that were in no tree."""
        for table in (self._cpu, self._started):
            for pid in set(table) - self._seen:
                del table[pid]
        self._seen = set()


def _uptime() -> float:
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])
