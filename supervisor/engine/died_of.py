"""What a unit died of, for the admin: the exception in its last output lines (never routine
log lines), and whether the kernel's OOM killer was at work while it ran."""

from __future__ import annotations

import re
import time

from . import kernel_log as kernel_log_module
from .kernel_log import KernelLog

# `SomeError: message`, `pkg.mod.SomethingException: ...`, or a bare `AssertionError`, as Python
# prints the last line of a traceback (after any `During handling ...` chain).
EXCEPTION_LINE = re.compile(
    r"^(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Failure|Exit|Interrupt|Fault)(?::\s.*|:)?$"
)
# a log line at an error level: Python logging (`- ERROR -`), PostgreSQL (`FATAL:`), ...
ERROR_LEVEL = re.compile(r"\b(?:ERROR|CRITICAL|FATAL|PANIC)\b")
# a routine log line: Python logging below ERROR, PostgreSQL's LOG/WARNING, Redis's `pid:R date . * # -`
ROUTINE = re.compile(r"\b(?:DEBUG|INFO|NOTICE|WARNING|WARN|LOG|STATEMENT|DETAIL|HINT)\b"
                     r"|^\d+:[A-Z] \d+ \w+ \d{4} [\d:.]+ [.\-*#] ")
LAST_LINES = 3  # plain lines shown when there is no exception nor error line

PROC_VMSTAT = "/proc/vmstat"
COUNTERS_ROSE = "the kernel's OOM killer killed meanwhile: oom_kill rose"
CGROUP_FS = "/sys/fs/cgroup"


def exception_line(lines: list[str]) -> str | None:
    """The last line of the form `SomeError: message`, stripped; None when there is none."""
    for line in reversed(lines):
        text = line.strip()
        if EXCEPTION_LINE.match(text):
            return text
    return None


def died_of(lines: list[str]) -> str:
    """The exception, else the last error-level line, else the last lines that are not routine
    log lines (a usage message, a crash report); "" when all are routine (access logs)."""
    found = exception_line(lines) or next((line.strip() for line in reversed(lines) if ERROR_LEVEL.search(line)), None)
    if found:
        return found
    return " | ".join(line.strip() for line in lines[-LAST_LINES:] if line.strip() and not ROUTINE.search(line))


def _oom_kill_count(path: str) -> int | None:
    """The `oom_kill N` line of /proc/vmstat, a cgroup v2 memory.events or a v1 memory.oom_control."""
    try:
        with open(path, "rb") as f:
            text = b"\n" + f.read()
        at = text.index(b"\noom_kill ") + 10  # one search, not a Python loop over /proc/vmstat's lines
        return int(text[at:].split(b"\n", 1)[0])
    except (OSError, ValueError):
        return None


def _cgroup_counters(cgroup_file: str = "/proc/self/cgroup") -> list[str]:
    """The OOM kill counters of the cgroup(s) a process runs in (v2 and v1 memory), from its
    /proc/PID/cgroup."""
    try:
        with open(cgroup_file) as f:
            entries = [line.rstrip("\n").split(":", 2) for line in f]
    except OSError:
        return []
    files = []
    for entry in entries:
        if len(entry) == 3 and entry[0] == "0" and entry[1] == "":
            files.append(f"{CGROUP_FS}{entry[2].rstrip('/')}/memory.events")
        elif len(entry) == 3 and "memory" in entry[1].split(","):
            files.append(f"{CGROUP_FS}/memory{entry[2].rstrip('/')}/memory.oom_control")
    return files


_OWN_COUNTERS: tuple[float, list[str]] = (-1e9, [])
OWN_CGROUP_KEPT = 60.0  # seconds the daemon's own cgroup is taken as known (it is moved rarely, if ever)


def _own_cgroup_counters() -> list[str]:
    """The daemon's cgroup counters, which a unit forked just now counts in too (a child starts
    in its parent's cgroup): read once a minute, not at every spawn."""
    global _OWN_COUNTERS
    now = time.monotonic()
    if now - _OWN_COUNTERS[0] > OWN_CGROUP_KEPT:
        _OWN_COUNTERS = (now, _cgroup_counters())
    return _OWN_COUNTERS[1]


_Baseline = tuple[list[str], list["int | None"], "int | None", int]
_BASELINE: tuple[float, object, _Baseline] | None = None
BASELINE_KEPT = 0.05  # seconds one reading of the counters serves as the baseline of every spawn


def _baseline(kernel_log: KernelLog) -> _Baseline:
    """(counter files, their counts, the kernel log's last record, its losses) as of now, or
    as of at most BASELINE_KEPT ago: a start of 500 units read /proc/vmstat 500 times in half a
    second. A kill in that moment before a spawn is no kill of its process (the kernel's record
    names the pid); only the counters, where the kernel log cannot be read, would count it."""
    global _BASELINE
    now, key = time.monotonic(), (kernel_log, PROC_VMSTAT)
    if _BASELINE is not None and _BASELINE[1] == key and now - _BASELINE[0] <= BASELINE_KEPT:
        return _BASELINE[2]
    files = [PROC_VMSTAT, *_own_cgroup_counters()]
    before = [_oom_kill_count(f) for f in files]
    seq = kernel_log.drain() if kernel_log.readable else None
    baseline = (files, before, seq, kernel_log.losses)
    _BASELINE = (now, key, baseline)
    return baseline


class OomWatch:
    """What the kernel says of a unit's SIGKILL: its log naming the process (when synsup may
    read it), else its OOM kill counters, read at the spawn, risen by the exit."""

    # one per unit: no __dict__
    __slots__ = ("pid", "files", "before", "log", "seq", "losses")

    def __init__(self, pid: int, kernel_log: KernelLog | None = None) -> None:
        kernel_log = kernel_log or kernel_log_module.KERNEL_LOG
        self.pid = pid
        self.log = kernel_log
        self.files, self.before, self.seq, self.losses = _baseline(kernel_log)  # right after its fork

    def evidence(self) -> str | None:
        """Why the kernel says the process was killed for memory, or None when it does not."""
        if self.seq is not None:
            record = self.log.killed(self.pid, self.seq)
            if record is not None:
                return f"the kernel's log: {record.text}"
            if self.log.readable and self.log.losses == self.losses:
                return None  # the log saw everything and names no kill of ours
        return COUNTERS_ROSE if self._counters_rose() else None

    def _counters_rose(self) -> bool:
        after = [_oom_kill_count(f) for f in self.files]
        return any(a is not None and b is not None and a > b for a, b in zip(after, self.before))
