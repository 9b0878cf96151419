"""Small /proc files read bare (os.open/os.read, no file object): what the engine's resource
figures and the process records both read."""

from __future__ import annotations

import os

TICKS = os.sysconf("SC_CLK_TCK")


def read_small(path: str) -> bytes:
    """A small /proc file's content: one open, one read, one close (no file object)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


def stat_fields(pid: int) -> list[bytes] | None:
    """/proc/PID/stat's fields after the command name (its state first), or None once it is gone."""
    try:
        return read_small(f"/proc/{pid}/stat").rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
