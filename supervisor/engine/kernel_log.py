"""The kernel's own word on an OOM kill: its log (/dev/kmsg) names the process it killed.

One reader for the daemon, opened at its end (only what the kernel says after synsup started
counts) and drained without blocking when a unit is spawned and when one dies of SIGKILL: a
read per record since the last drain, no thread, no timer. Where the log cannot be read
(no CAP_SYSLOG under `dmesg_restrict`, systemd's ProtectKernelLogs= or PrivateDevices=),
`readable` is False and the OOM kill counters decide alone (`died_of.OomWatch`)."""

from __future__ import annotations

import errno
import os
import re
from collections import deque
from dataclasses import dataclass

KMSG = "/dev/kmsg"
RECORD_MAX = 8192  # a read of /dev/kmsg returns one record; a smaller buffer fails with EINVAL
KEPT = 64  # OOM kill records remembered between drains

# "Out of memory: Killed process 4242 (python3) total-vm:...", "Memory cgroup out of memory: Killed
# process 4242 (...)", before 4.19 "Killed process 4242 (...)", and the oom-kill summary line
# "oom-kill:constraint=CONSTRAINT_MEMCG,...,task=python3,pid=4242,uid=0"
KILLED = re.compile(r"\bKilled process (\d+) ")
SUMMARY = re.compile(r"^oom-kill:.*\bpid=(\d+)\b")


@dataclass(frozen=True)
class OomRecord:
    seq: int  # the kernel's record number: later records have higher ones
    pid: int
    text: str  # what the kernel said, as far as the first comma


def oom_record(line: str) -> OomRecord | None:
    """The OOM kill one /dev/kmsg record reports (`PRIO,SEQ,USEC,FLAGS;MESSAGE`), or None."""
    prefix, semicolon, message = line.partition(";")
    fields = prefix.split(",")
    if not semicolon or len(fields) < 3 or not fields[1].isdigit():
        return None
    message = message.rstrip("\n")
    found = KILLED.search(message) or SUMMARY.match(message)
    if found is None:
        return None
    return OomRecord(int(fields[1]), int(found.group(1)), message.split(",")[0].strip())


class KernelLog:
    """OOM kill records the kernel logged since this reader opened, read as they come."""

    def __init__(self, path: str = KMSG) -> None:
        self.path = path
        self.last_seq = -1  # the highest record number read so far
        self.losses = 0  # times records were overwritten before we read them
        self._fd: int | None = None
        self._tried = False
        self._kills: deque[OomRecord] = deque(maxlen=KEPT)

    @property
    def readable(self) -> bool:
        self._open()
        return self._fd is not None

    def _open(self) -> None:
        if self._tried:
            return
        self._tried = True
        try:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.lseek(self._fd, 0, os.SEEK_END)  # what the kernel says from now on
        except OSError:
            self.close()

    def drain(self) -> int:
        """Read every record logged since the last drain; the highest record number seen."""
        self._open()
        while self._fd is not None:
            try:
                data = os.read(self._fd, RECORD_MAX)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.EPIPE:
                    self.losses += 1  # overwritten meanwhile: the read goes on at the oldest kept
                    continue
                self.close()
                break
            if not data:
                break
            self._take(data.decode(errors="replace"))
        return self.last_seq

    def _take(self, text: str) -> None:
        for line in text.splitlines():
            if line.startswith(" "):
                continue  # a record's KEY=VALUE continuation
            fields = line.split(",", 2)
            if len(fields) > 1 and fields[1].isdigit():
                self.last_seq = max(self.last_seq, int(fields[1]))
            record = oom_record(line)
            if record is not None:
                self._kills.append(record)

    def killed(self, pid: int, after_seq: int) -> OomRecord | None:
        """The kernel's record of an OOM kill of `pid` logged after record `after_seq`."""
        self.drain()
        return next((r for r in reversed(self._kills) if r.pid == pid and r.seq > after_seq), None)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = None


KERNEL_LOG = KernelLog()
