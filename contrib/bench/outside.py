"""What a supervisor does, seen from outside it: its children in /proc/<pid>/task/*/children
(never its own events), its CPU from /proc/<pid>/task/*/schedstat, its RSS. The same for
synsup and supervisord."""

from __future__ import annotations

import glob
import os
import signal
import time

POLL = 0.0005  # seconds between two looks at the children


def children(pid: int) -> set[int]:
    """The pids of `pid`'s children, from every thread's children list (a thread may fork)."""
    found: set[int] = set()
    for path in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            with open(path) as f:
                found.update(int(p) for p in f.read().split())
        except (FileNotFoundError, ProcessLookupError):
            pass
    return found


def spawn_span(pid: int, count: int, timeout: float = 300.0) -> tuple[float, float]:
    """(first child seen, `count` children seen), perf_counter times, watching from now on."""
    deadline = time.perf_counter() + timeout
    first = None
    while True:
        seen, now = len(children(pid)), time.perf_counter()
        if seen and first is None:
            first = now
        if seen >= count:
            return first if first is not None else now, now
        if now > deadline:
            raise TimeoutError(f"pid {pid} started only {seen} of {count} children within {timeout:g} s")
        time.sleep(POLL)


def crash_to_new_child(pid: int, crashes: int, timeout: float = 60.0) -> list[float]:
    """Seconds from SIGKILL of a child to a child the supervisor had not before, `crashes` times,
    each time another of the children it had at the start (each a unit stable for as long as the
    caller waited; a replacement is never killed again: with pids wrapping around, the lowest
    pid was once a replacement, killed again and again until its unit was in a crash loop)."""
    took, killed = [], set()
    stable = children(pid)
    for _ in range(crashes):
        before = children(pid)
        victim = min((stable & before) - killed)
        killed.add(victim)
        crashed = time.perf_counter()
        os.kill(victim, signal.SIGKILL)
        while not (children(pid) - before):
            if time.perf_counter() - crashed > timeout:
                raise TimeoutError(f"no new child of pid {pid} within {timeout:g} s of killing {victim}")
            time.sleep(POLL)
        took.append(time.perf_counter() - crashed)
        time.sleep(0.05)  # let the new child start before the next kill
    return took


def cpu_seconds(pid: int) -> float:
    """CPU time of every live thread of `pid`, in ns precision (schedstat, not clock ticks)."""
    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(path) as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / 1e9


def cpu_percent(pid: int, seconds: float) -> float:
    """% of one core `pid` used over the next `seconds`."""
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return 100 * (cpu_seconds(pid) - before) / seconds


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise ProcessLookupError(pid)
