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

from ..path_trust import open_dir_nofollow
from ..spec import NAME_RULE, valid_name

MAX_BYTES = 10 * 1024 * 1024
KEEP_FILES = 3
TAIL_LINES = 50
RETRY_AFTER = 5.0  # seconds before a log file that failed is tried again
# never through a symlink planted in a log dir another user can write
LOG_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK


def refusal_of(path: str, st: os.stat_result) -> str | None:
    """Why an opened log file must not be written, or None."""
    if not stat.S_ISREG(st.st_mode):
        return f"log file {path} is not a regular file; remove it"
    if st.st_nlink > 1:
        return f"log file {path} has other hard links ({st.st_nlink}); remove it"
    return None


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
        self.refusal: str | None = None  # why the log file must not be written (a planted symlink ...)
        self._bad_name: str | None = None
        self._fd: int | None = None
        self._size = 0
        self._retry_at = 0.0
        self._partial = ""

    @classmethod
    def for_unit(cls, log_dir: str, name: str, max_bytes: int = MAX_BYTES, keep: int = KEEP_FILES) -> UnitOutput:
        """`name`.log in `log_dir`; a name that is no single safe file name is refused
        (it could lead outside the dir)."""
        output = cls(os.path.join(log_dir, f"{name}.log"), max_bytes, keep)
        if not valid_name(name):
            output._bad_name = f"unit name {name!r} cannot name a log file: use {NAME_RULE}"
        return output

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
            self._fd = self._open_file()
            self._size = os.fstat(self._fd).st_size
        return self._fd

    def _open_file(self) -> int:
        """Open the log without following a symlink anywhere on its path; refuse what is not
        a file of its own. OSError (refusals as ELOOP) otherwise."""
        if self._bad_name is not None:
            self.refusal = self._bad_name
            raise OSError(errno.EINVAL, self.refusal)
        directory, name = os.path.split(self.path)
        dir_fd = open_dir_nofollow(directory)  # the resolved dir: a symlink planted since is ELOOP
        try:
            fd = os.open(name, LOG_FLAGS, 0o640, dir_fd=dir_fd)
        except OSError as e:
            if e.errno == errno.ELOOP:
                self.refusal = f"log file {self.path} is a symlink; synsup never writes through one: remove it"
            elif e.errno == errno.ENXIO:  # a FIFO nobody reads (or a device socket)
                self.refusal = f"log file {self.path} is not a regular file; remove it"
            raise
        finally:
            os.close(dir_fd)
        self.refusal = refusal_of(self.path, os.fstat(fd))
        if self.refusal is not None:
            os.close(fd)
            raise OSError(errno.ELOOP, self.refusal)
        return fd

    def check(self) -> str | None:
        """Before a spawn: open the log now; why it must not be written, or None (other errors
        only drop output, as writing does)."""
        self._retry_at = 0.0
        try:
            self._open()
        except OSError as e:
            self._drop(0, e)
        return self.refusal

    def _drop(self, size: int, error: OSError) -> None:
        self.dropped += size
        if not isinstance(error, BlockingIOError):
            self.drop_reason = errno.errorcode.get(error.errno or 0, str(error))
            self.close()
            self._retry_at = time.monotonic() + RETRY_AFTER

    def new_run(self) -> None:
        """A new process: the in-memory tail (where its error is looked for) starts empty."""
        self.tail.clear()
        self._partial = ""

    def note(self, text: str) -> None:
        """A line of synsup's own in the unit's log (spawns and exits)."""
        self._append(f"[synsup] {text}\n".encode())

    def last(self, n: int = 10) -> list[str]:
        lines = list(self.tail) + ([self._partial] if self._partial else [])
        return lines[-n:]

    def describe_drops(self) -> str | None:
        if not self.dropped:
            return None
        return f"log: {self.dropped} bytes dropped ({self.refusal or self.drop_reason or 'log file unavailable'})"

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
