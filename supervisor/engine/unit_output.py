"""A unit's stdout and stderr: a size-rotated log file, and its last lines.

A unit's process writes its log file itself (its stdout and stderr are opened on the file with
O_APPEND), so its output does not depend on the daemon staying alive: a daemon that dies, or
re-executes, loses nothing, and a later one reads the last lines back from the file. The
daemon rotates the file by copy-truncate (`upkeep`, when `log_watch` says it changed), which
the unit's open descriptor survives.
synsup's own lines (`[synsup] started pid ...`) are appended by the daemon; when they cannot be
written (disk full, read-only, directory deleted) they are counted and dropped and the file is
tried again a little later. Output written through `write` (a spawner that pipes, the tests')
is kept in memory as well."""

from __future__ import annotations

import collections
import errno
import os
import shutil
import stat
import time
from collections.abc import Callable
from typing import NamedTuple

from ..path_trust import open_dir_nofollow
from ..spec import NAME_RULE, valid_name

MAX_BYTES = 10 * 1024 * 1024
KEEP_FILES = 3
TAIL_LINES = 50
TAIL_BYTES = 65536  # read back from the end of the file for the last lines
OWN_LINE = "[synsup] "
MOVED = ("the log file was moved or removed: the unit writes to the old file until it restarts "
         "(rotate unit logs with copytruncate, or let synsup rotate them)")
RETRY_AFTER = 5.0  # seconds before a log file that failed is tried again
# never through a symlink planted in a log dir another user can write
LOG_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK


_LOG_DIRS: dict[str, tuple[int, int, int]] = {}  # log dir -> (its fd, st_dev, st_ino), opened without symlinks
LOG_DIRS_KEPT = 16


def log_dir_fd(directory: str) -> int:
    """A descriptor of the log dir (the daemon's; never to be closed by the caller), opened one
    component at a time without following a symlink (open_dir_nofollow), once: later opens
    only check that the path still leads to that directory (one lstat, not eight system calls
    on the way to each spawn). A directory removed, replaced or reached through a planted
    symlink since leads elsewhere, and is opened anew (ELOOP for the symlink)."""
    st = os.stat(directory, follow_symlinks=False)
    kept = _LOG_DIRS.get(directory)
    if kept is not None and stat.S_ISDIR(st.st_mode) and (st.st_dev, st.st_ino) == kept[1:]:
        return kept[0]
    fd = open_dir_nofollow(directory)
    opened = os.fstat(fd)
    if kept is not None:
        os.close(kept[0])
        del _LOG_DIRS[directory]
    while len(_LOG_DIRS) >= LOG_DIRS_KEPT:
        os.close(_LOG_DIRS.pop(next(iter(_LOG_DIRS)))[0])
    _LOG_DIRS[directory] = (fd, opened.st_dev, opened.st_ino)
    return fd


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


class EndedRun(NamedTuple):
    start: int  # where its output began in the file
    lines: list[str] | None  # its output that came through `write`, if any


class UnitOutput:
    # one per unit: no __dict__
    __slots__ = ("path", "max_bytes", "keep", "tail", "dropped", "drop_reason", "refusal", "_bad_name", "_fd",
                 "_size", "_retry_at", "_partial", "_run_start", "_child_file", "moved", "on_open")

    def __init__(self, path: str, max_bytes: int = MAX_BYTES, keep: int = KEEP_FILES) -> None:
        self.path = path
        self.max_bytes, self.keep = max_bytes, keep
        self.tail: collections.deque[str] | None = None  # output that came through `write` (a pipe)
        self.dropped = 0  # bytes not written to the log file
        self.drop_reason: str | None = None
        self.refusal: str | None = None  # why the log file must not be written (a planted symlink ...)
        self._bad_name: str | None = None
        self._fd: int | None = None
        self._size = 0
        self._retry_at = 0.0
        self._partial = ""
        self._run_start = 0  # where the running process's output begins in the file
        self._child_file: tuple[int, int] | None = None  # (dev, inode) the running process writes
        self.moved = False
        self.on_open: Callable[[UnitOutput], None] | None = None  # a process writes the file from now on

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
        if self.tail is None:  # made on the first write: units that write their own file have none
            self.tail = collections.deque(maxlen=TAIL_LINES)
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
        dir_fd = log_dir_fd(directory)  # the resolved dir: a symlink planted since is ELOOP
        try:
            fd = os.open(name, LOG_FLAGS, 0o640, dir_fd=dir_fd)
        except OSError as e:
            if e.errno == errno.ELOOP:
                self.refusal = f"log file {self.path} is a symlink; synsup never writes through one: remove it"
            elif e.errno == errno.ENXIO:  # a FIFO nobody reads (or a device socket)
                self.refusal = f"log file {self.path} is not a regular file; remove it"
            raise
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
        self.tail = None
        self._partial = ""
        try:
            self._run_start = os.stat(self.path, follow_symlinks=False).st_size
        except OSError:
            self._run_start = 0

    def note(self, text: str) -> None:
        """A line of synsup's own in the unit's log (spawns and exits)."""
        self._append(f"{OWN_LINE}{text}\n".encode())

    def open_for_child(self) -> int | None:
        """A new descriptor on the log file for a process's stdout and stderr; None when the file
        cannot be opened now (its output is then lost: it goes to /dev/null)."""
        try:
            fd = self._open_file()
        except OSError as e:
            self._drop(0, e)
            self._child_file = None  # the process's output goes nowhere: no file of it to watch
            return None
        os.set_blocking(fd, True)
        st = os.fstat(fd)
        self._run_start, self._child_file, self.moved = st.st_size, (st.st_dev, st.st_ino), False
        return fd

    def watch_from_here(self) -> None:
        """synsup's own lines of a spawn are written (the last exit, `started pid`): a change of
        the file from now on is the process's own, and worth a look (`log_watch`). Watched from
        the open, a start of 500 units that write nothing had 500 logs looked at 5 s later,
        each for the daemon's own line."""
        if self.on_open is not None and self._child_file is not None:
            self.on_open(self)
            self._look()  # what the process wrote before the watch (a burst at its start) is looked at now

    def adopted(self) -> None:
        """A process an earlier daemon started writes the file: its output is the file's end."""
        try:
            st = os.stat(self.path, follow_symlinks=False)
            self._run_start, self._child_file = max(0, st.st_size - TAIL_BYTES), (st.st_dev, st.st_ino)
        except OSError:
            return
        if self.on_open is not None:
            self.on_open(self)

    @property
    def written_by_process(self) -> bool:
        """A process of the unit has had the file open (it may be writing it)."""
        return self._child_file is not None

    def upkeep(self) -> None:
        """After the file changed (`log_watch`): copy-truncate the file once it is past max_bytes, and
        notice a file the running process no longer writes to (renamed away, deleted)."""
        self._look()

    def _look(self) -> None:
        try:
            st: os.stat_result | None = os.stat(self.path, follow_symlinks=False)
        except OSError:
            st = None
        if self._child_file is not None and (st is None or (st.st_dev, st.st_ino) != self._child_file):
            self.moved = True
            return
        if st is not None and self.max_bytes and st.st_size >= self.max_bytes:
            try:
                self._copy_truncate()
            except OSError as e:
                self._drop(0, e)

    def _copy_truncate(self) -> None:
        if self.keep > 0:
            for index in range(self.keep - 1, 0, -1):
                if os.path.exists(older := f"{self.path}.{index}"):
                    os.replace(older, f"{self.path}.{index + 1}")
            shutil.copyfile(self.path, f"{self.path}.1", follow_symlinks=False)
        fd = self._open_file()
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)
        self._run_start = self._size = 0

    def ended_run(self) -> EndedRun:
        """Where the running process's output is, taken before its successor's run begins (a crash
        restart forked before the exit is looked at): `last(n, ended)` reads it afterwards. No
        system call."""
        lines = None if self.tail is None else list(self.tail) + ([self._partial] if self._partial else [])
        return EndedRun(self._run_start, lines)

    def last(self, n: int = 10, ended: EndedRun | None = None) -> list[str]:
        """The last lines of the running (or last) process, or of the `ended` run."""
        if ended is not None:
            if ended.lines:
                return ended.lines[-n:]
            if self._run_start < ended.start:
                return []  # copy-truncated since: its lines are in the rotated file, among older ones
            return self._file_tail(n, ended.start, self._run_start)  # it ends where the next run began
        lines = list(self.tail or ()) + ([self._partial] if self._partial else [])
        return lines[-n:] if lines else self._file_tail(n, self._run_start)

    def _file_tail(self, n: int, run_start: int, run_end: int | None = None) -> list[str]:
        """The last lines of a run (from `run_start` to `run_end` or the end), read back from the file."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            return []
        try:
            size = os.fstat(fd).st_size
            if run_end is not None and run_start <= run_end <= size:
                size = run_end
            start = max(run_start if run_start <= size else 0, size - TAIL_BYTES)
            data = os.pread(fd, size - start, start)
        except OSError:
            return []
        finally:
            os.close(fd)
        lines = [line.rstrip("\r") for line in data.decode(errors="replace").split("\n")]
        return [line for line in lines if line and not line.startswith(OWN_LINE)][-n:]

    def describe_drops(self) -> str | None:
        if self.moved:
            return f"log: {MOVED}"
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
