"""Which unit logs grew, told by the kernel: units write their log files themselves, so no write
passes through the daemon. One inotify descriptor; each log file the running process writes
has a one-shot watch (a write, a rename, an unlink), so a log that does not change costs
nothing, not even a timer. The first event arms one timer; when it fires, each log that
changed is looked at (`UnitOutput.upkeep`: copy-truncate past its size, or noticed moved) and
watched again: a busy log is looked at once per interval, as often as polling did, an idle one
never. A log that cannot be watched (no inotify, out of watches) is polled on the interval."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import struct

import structlog

from .unit_output import UnitOutput

IN_MODIFY, IN_ATTRIB, IN_MOVE_SELF, IN_DELETE_SELF = 0x2, 0x4, 0x800, 0x400
IN_Q_OVERFLOW, IN_ONESHOT = 0x4000, 0x80000000
CHANGED = IN_MODIFY | IN_ATTRIB | IN_MOVE_SELF | IN_DELETE_SELF | IN_ONESHOT  # IN_ATTRIB: an unlink
EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (a watched file's events carry no name)

log = structlog.get_logger()


def _inotify() -> tuple[ctypes.CDLL, int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, AttributeError):
        return None
    return (libc, fd) if fd >= 0 else None


class LogWatch:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._loop = asyncio.get_running_loop()
        self._watched: dict[int, UnitOutput] = {}  # watch descriptor -> the output of its file
        self._changed: set[UnitOutput] = set()
        self._polled: set[UnitOutput] = set()  # could not be watched: looked at every interval
        self._timer: asyncio.TimerHandle | None = None
        found = _inotify()
        self._libc: ctypes.CDLL | None = found[0] if found else None
        self._fd = found[1] if found else -1
        if self._fd >= 0:
            self._loop.add_reader(self._fd, self._read)

    @property
    def armed(self) -> bool:
        """A look at some logs is due (something changed, or a log is polled)."""
        return self._timer is not None

    def watch(self, output: UnitOutput) -> None:
        """Tell of `output`'s next change (its process's file was just opened or looked at)."""
        if self._libc is not None:
            wd = self._libc.inotify_add_watch(self._fd, os.fsencode(output.path), CHANGED)
            if wd >= 0:
                self._watched[wd] = output
                self._polled.discard(output)
                return
            if ctypes.get_errno() == errno.ENOENT:
                output.upkeep()  # gone already: noticed as moved
                return
        self._polled.add(output)
        self._arm()

    def forget(self, output: UnitOutput) -> None:
        self._changed.discard(output)
        self._polled.discard(output)
        for wd in [wd for wd, watched in self._watched.items() if watched is output]:
            del self._watched[wd]  # a change still queued for it finds no output

    def _read(self) -> None:
        try:
            data = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        for offset in range(0, len(data), EVENT.size):  # no names: every event has the same size
            wd, mask, _, _ = EVENT.unpack_from(data, offset)
            if mask & IN_Q_OVERFLOW:
                self._changed.update(self._watched.values())
                self._watched.clear()
            elif (output := self._watched.pop(wd, None)) is not None:
                self._changed.add(output)  # the one-shot watch is gone: watched again after a look
        if self._changed:
            self._arm()

    def _arm(self) -> None:
        if self._timer is None:
            self._timer = self._loop.call_later(self.interval, self._look)

    def _look(self) -> None:
        self._timer = None
        changed, self._changed = self._changed, set()
        for output in changed | self._polled:
            output.upkeep()
            if not output.moved:
                self.watch(output)
        if self._polled:
            self._arm()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
        self._libc = None
