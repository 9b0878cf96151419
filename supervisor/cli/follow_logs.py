"""`synsup logs`: the last lines of unit logs, and following them across rotation (synsup's
own size rotation and rename-style logrotate), one unit or all of them merged."""

from __future__ import annotations

import errno
import os
import stat
import sys
import time
from typing import BinaryIO

COLOURS = (31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96)
POLL = 0.2
# as the daemon writes them: never through a symlink, never blocking on a FIFO
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class NotARegularFile(OSError):
    pass


def open_log(path: str) -> BinaryIO:
    """The regular file at `path`; OSError for a symlink, a FIFO or anything else planted there."""
    fd = os.open(path, READ_FLAGS)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotARegularFile(f"{path} is not a regular file (not shown; remove it)")
    return os.fdopen(fd, "rb")


class FollowedLog:
    """One log path: reopened when the path names a new file (rotated), rewound when truncated."""

    def __init__(self, path: str, prefix: bytes = b"") -> None:
        self.path, self.prefix = path, prefix
        self._file: BinaryIO | None = None
        self._inode: int | None = None
        self._partial = b""
        self.refused: str | None = None  # why the file at the path is not read

    def tail(self, n: int) -> bytes:
        self._reopen()
        if self._file is None:
            return b""
        if n <= 0:
            self._file.seek(0, os.SEEK_END)  # `-n 0 -f`: only what comes from now on
            return b""
        lines = self._file.read().splitlines(keepends=True)
        return self._prefixed(b"".join(lines[-n:]))

    def _reopen(self) -> None:
        if self._file is not None:
            self._file.close()
        try:
            self._file = open_log(self.path)
            self._inode = os.fstat(self._file.fileno()).st_ino
        except NotARegularFile as e:
            self._file, self._inode, self.refused = None, None, str(e)
        except OSError as e:
            self._file, self._inode = None, None
            if e.errno == errno.ELOOP:
                self.refused = f"{self.path} is not a regular file (a symlink: not followed; remove it)"

    def read(self) -> bytes:
        """What was written since the last read, whole lines only, prefixed."""
        data = self._file.read() if self._file is not None else b""
        if self._rotated():
            data += self._file.read() if self._file is not None else b""  # the rest of the old file
            self._reopen()
            data += self._file.read() if self._file is not None else b""
        return self._prefixed(data)

    def _rotated(self) -> bool:
        try:
            st = os.lstat(self.path)
        except OSError:
            return False
        if self._file is None or st.st_ino != self._inode:
            return True
        if st.st_size < self._file.tell():  # truncated (copytruncate-style)
            self._file.seek(0)
        return False

    def _prefixed(self, data: bytes) -> bytes:
        if not self.prefix:
            return data
        data = self._partial + data
        whole, _, self._partial = data.rpartition(b"\n")
        if not whole and not data.endswith(b"\n"):
            return b""
        return b"".join(self.prefix + line + b"\n" for line in whole.split(b"\n"))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _prefix(name: str, index: int, width: int, colour: bool) -> bytes:
    label = f"{name:<{width}} | "
    if colour:
        label = f"\x1b[{COLOURS[index % len(COLOURS)]}m{label}\x1b[0m"
    return label.encode()


def show(paths: dict[str, str], lines: int, follow: bool) -> int:
    """Print the last `lines` of each log (prefixed with its unit when several), then follow."""
    out = sys.stdout.buffer
    many = len(paths) > 1
    colour = many and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    width = max((len(n) for n in paths), default=0)
    logs = [FollowedLog(path, _prefix(name, i, width, colour) if many else b"")
            for i, (name, path) in enumerate(sorted(paths.items()))]
    try:
        for log in logs:
            out.write(log.tail(lines))
        out.flush()
        for refused in [log.refused for log in logs if log.refused]:
            print(f"synsup: warning: {refused}", file=sys.stderr)
        while follow:
            chunks = [log.read() for log in logs]
            if any(chunks):
                out.write(b"".join(chunks))
                out.flush()
            else:
                time.sleep(POLL)
    finally:
        for log in logs:
            log.close()
    return 0
