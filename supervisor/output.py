"""A unit's captured stdout and stderr: a size-rotated log file and the last lines in memory.

Writing never blocks or fails the unit: when the log cannot be written (disk full, read-only,
its directory deleted), the output is counted and dropped, and the file is tried again a
little later."""

from __future__ import annotations

import collections
import errno
import os
import stat
import time

MAX_BYTES = 10 * 1024 * 1024
KEEP_FILES = 3
TAIL_LINES = 50
RETRY_AFTER = 5.0  # seconds before a log file that failed is tried again
# never through a symlink planted in a log dir another user can write
LOG_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK


class LogDirError(Exception):
    pass


def prepare_log_dir(log_dir: str, names: list[str]) -> None:
    """Create the log dir and open every unit's log once, before anything starts."""
    try:
        os.makedirs(log_dir, mode=0o750, exist_ok=True)
    except OSError as e:
        raise LogDirError(f"cannot create log dir {log_dir}: {e.strerror}; pass --log-dir DIR "
                          "(a directory synsup may write)") from None
    for name in names:
        path = os.path.join(log_dir, f"{name}.log")
        try:
            os.close(os.open(path, LOG_FLAGS, 0o640))
        except OSError as e:
            raise LogDirError(f"cannot open log file {path}: {e.strerror}; pass --log-dir DIR "
                              "(a directory synsup may write)") from None


def rotate_files(path: str, keep: int) -> None:
    """path -> path.1 -> path.2 ... keeping `keep` rotated files."""
    for index in range(keep - 1, 0, -1):
        older = f"{path}.{index}"
        if os.path.exists(older):
            os.replace(older, f"{path}.{index + 1}")
    if keep > 0:
        os.replace(path, f"{path}.1")
    else:
        os.unlink(path)


class UnitOutput:
    def __init__(self, path: str, max_bytes: int = MAX_BYTES, keep: int = KEEP_FILES) -> None:
        self.path = path
        self.max_bytes, self.keep = max_bytes, keep
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.dropped = 0  # bytes not written to the log file
        self.drop_reason: str | None = None
        self._fd: int | None = None
        self._size = 0
        self._retry_at = 0.0
        self._partial = ""

    def write(self, data: bytes) -> None:
        self._append(data)
        lines = (self._partial + data.decode(errors="replace")).split("\n")
        self._partial = lines.pop()[-4096:]
        self.tail.extend(line.rstrip("\r") for line in lines)

    def _append(self, data: bytes) -> None:
        try:
            fd = self._open()
            if fd is None:
                raise BlockingIOError  # waiting to try again
            written = os.write(fd, data)
            self._size += written
            if written < len(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            if self.max_bytes and self._size >= self.max_bytes:
                self.close()
                rotate_files(self.path, self.keep)
        except OSError as e:
            self._drop(len(data), e)

    def _open(self) -> int | None:
        if self._fd is None:
            if time.monotonic() < self._retry_at:
                return None
            fd = os.open(self.path, LOG_FLAGS, 0o640)
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                os.close(fd)
                raise OSError(errno.EINVAL, f"{self.path} is not a regular file")
            self._fd, self._size = fd, st.st_size
        return self._fd

    def _drop(self, size: int, error: OSError) -> None:
        self.dropped += size
        if not isinstance(error, BlockingIOError):
            self.drop_reason = errno.errorcode.get(error.errno or 0, str(error))
            self.close()
            self._retry_at = time.monotonic() + RETRY_AFTER

    def note(self, text: str) -> None:
        """A line of synsup's own in the unit's log (spawns and exits)."""
        self._append(f"[synsup] {text}\n".encode())

    def last(self, n: int = 10) -> list[str]:
        lines = list(self.tail) + ([self._partial] if self._partial else [])
        return lines[-n:]

    def describe_drops(self) -> str | None:
        if not self.dropped:
            return None
        return f"log: {self.dropped} bytes dropped ({self.drop_reason or 'log file unavailable'})"

    def reopen(self) -> None:
        """After a rename-style logrotate: the next write opens the file at its path anew."""
        self.close()
        self._retry_at = 0.0

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None
