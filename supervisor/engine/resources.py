"""What a unit's whole process tree uses: resident memory, CPU time and open files, read
from /proc when asked (a scrape, `synsup status`), never on a timer.

One pass per process: /proc/PID/stat (CPU times, its children's, RSS) and the size of
/proc/PID/fd (its count of open files since Linux 6.2; its names before); a tree's members come
from /proc/PID/task/PID/children. Files are read with bare os.open/os.read: Python's file
objects were a third of a scrape's CPU. psutil read three files per process and kept an object
per pid. A unit's own process (a tree's root) has its files kept open between reads: procfs
makes a file anew when it is read from offset 0, so a scrape of 500 units reads them with one
pread each, without 1000 opens and closes (a quarter of a scrape's system time). A root's
kept file read after its process is gone fails (ESRCH), never shows another process."""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass

import psutil

from ..proc_stat import TICKS, read_small, stat_fields

MIN_CPU_WINDOW = 1.0  # seconds: CPU% over a shorter window is noise; the last figure stands
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Usage:
    rss_bytes: int
    cpu_seconds: float
    open_fds: int


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


def _stat(pid: int) -> tuple[float, int, float] | None:
    """(CPU seconds incl. reaped children, RSS bytes, start time in seconds since boot)."""
    fields = stat_fields(pid)
    return None if fields is None else _figures(fields)


def _figures(fields: list[bytes]) -> tuple[float, int, float]:
    cpu = sum(int(x) for x in fields[11:15]) / TICKS  # utime stime cutime cstime
    return cpu, int(fields[21]) * PAGE, int(fields[19]) / TICKS


def _open_fds(pid: int) -> int:
    """The size of /proc/PID/fd (Linux 6.2 and later: the count of open files; one stat call), or
    its entries counted where the size says nothing (0)."""
    try:
        return os.stat(f"/proc/{pid}/fd").st_size or len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _totals(pids: list[int]) -> tuple[float, int, int]:
    """(CPU seconds, RSS bytes, open files) of the processes of `pids` still there."""
    cpu, rss, fds = 0.0, 0, 0
    for member in pids:
        stat = _stat(member)
        if stat is not None:
            cpu, rss, fds = cpu + stat[0], rss + stat[1], fds + _open_fds(member)
    return cpu, rss, fds


class RootFiles:
    """A root process's /proc/PID/stat, its children file and its fd dir, kept open."""
    __slots__ = ("pid", "stat", "children", "fd_dir")
    COUNT = 3

    def __init__(self, pid: int) -> None:
        self.pid = pid
        flags = os.O_RDONLY | os.O_CLOEXEC
        self.stat = os.open(f"/proc/{pid}/stat", flags)
        try:
            self.children = os.open(f"/proc/{pid}/task/{pid}/children", flags)
            try:
                self.fd_dir = os.open(f"/proc/{pid}/fd", flags | os.O_DIRECTORY)
            except OSError:
                os.close(self.children)
                raise
        except OSError:
            os.close(self.stat)
            raise

    def read(self) -> tuple[tuple[float, int, float], list[int], int]:
        """(_stat's figures, the children's pids, the count of open files); OSError once gone."""
        figures = _figures(os.pread(self.stat, 65536, 0).rsplit(b")", 1)[1].split())
        children = [int(p) for p in os.pread(self.children, 65536, 0).split()]
        return figures, children, os.fstat(self.fd_dir).st_size or _open_fds(self.pid)

    def close(self) -> None:
        for fd in (self.stat, self.children, self.fd_dir):
            os.close(fd)


class ResourceSampler:
    def __init__(self) -> None:
        self._cpu: dict[int, tuple[float, float, float]] = {}  # root pid -> (when, cpu seconds, percent)
        self._started: dict[int, float] = {}  # root pid -> start time, seconds since boot
        self._seen: set[int] = set()
        self._kept: dict[int, RootFiles] = {}
        self._keep_at_most: int | None = None  # roots: kept files take a quarter of the free fds at most

    def tree(self, pid: int) -> list[int]:
        return process_tree(pid)

    def usage(self, pid: int) -> Usage | None:
        """The tree's totals, or None when its root is gone."""
        root = self._root_files(pid)
        if root is None:
            return self._usage_read_anew(pid)
        try:
            (cpu, rss, started), children, fds = root.read()
        except (OSError, IndexError, ValueError):
            self._forget(pid)  # gone; or its pid is another process's now, which is read anew
            return self._usage_read_anew(pid)
        self._started[pid] = started
        self._seen.add(pid)
        for child in children:
            more = _totals(self.tree(child))
            cpu, rss, fds = cpu + more[0], rss + more[1], fds + more[2]
        return Usage(rss, cpu, fds)

    def _usage_read_anew(self, pid: int) -> Usage | None:
        root = _stat(pid)
        if root is None:
            return None
        self._started[pid] = root[2]
        self._seen.add(pid)
        cpu, rss, fds = _totals([p for p in self.tree(pid) if p != pid])
        return Usage(rss + root[1], cpu + root[0], fds + _open_fds(pid))

    def _root_files(self, pid: int) -> RootFiles | None:
        kept = self._kept.get(pid)
        if kept is not None:
            return kept
        if self._keep_at_most is None:  # once per round of reads (prune): the units' own fds change
            free = resource.getrlimit(resource.RLIMIT_NOFILE)[0] - _open_fds(os.getpid())
            self._keep_at_most = len(self._kept) + max(0, free // 4 // RootFiles.COUNT)
        if len(self._kept) >= self._keep_at_most:
            return None
        try:
            kept = self._kept[pid] = RootFiles(pid)
        except OSError:
            return None
        return kept

    def _forget(self, pid: int) -> None:
        kept = self._kept.pop(pid, None)
        if kept is not None:
            kept.close()

    def close(self) -> None:
        for pid in list(self._kept):
            self._forget(pid)

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
        for pid in set(self._kept) - self._seen:
            self._forget(pid)
        self._seen = set()
        self._keep_at_most = None


def _uptime() -> float:
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])
