"""A unit's process started with posix_spawn(3), not subprocess.Popen: glibc's clone(CLONE_VM |
CLONE_VFORK) and exec, with none of Popen's Python around it (its pipes, its fd closing in the
child, its error pipe). With 500 units, Popen took about 0.9 ms of the daemon per spawn and
posix_spawn about 0.3 ms: on the way from a crash to its new process, and 500 times in a start.

The child gets what Popen would give it: its own session (setsid), stdin from /dev/null or a
pipe of the spec's bytes, stdout and stderr on the unit's log, SIGPIPE and SIGXFSZ back to their
defaults (Python ignores them), no blocked signal, no other descriptor. Every descriptor the
daemon opens is close-on-exec (PEP 446); those it inherited are made so when a Spawner is made
(`inherited_fds_closed_on_exec`), so none reaches a unit. A unit with its own working directory
is started by Popen (posix_spawn has no chdir before Python 3.13)."""

from __future__ import annotations

import errno
import os
import signal
import stat
from dataclasses import dataclass

RESET_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)  # what Popen's restore_signals gives back
_DEVNULL: list[int] = []  # the daemon's /dev/null, opened once


@dataclass(slots=True)
class Spawned:
    """What Child reads of a process (Popen's fields): started here, reaped by Child."""

    pid: int
    returncode: int | None = None
    stdout: None = None
    stdin: None = None


def devnull() -> int:
    if not _DEVNULL:
        _DEVNULL.append(os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC))
    return _DEVNULL[0]


def executable(name: str, env: dict[str, str]) -> str:
    """The file `name` runs, found as Popen finds it: a path as it is, a bare name on the PATH of
    the unit's environment (not the daemon's). FileNotFoundError when no PATH entry has it."""
    if os.sep in name:
        return name
    denied = None
    for directory in os.get_exec_path(env):
        path = os.path.join(directory, name)
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and os.access(path, os.X_OK):
            return path
        denied = denied or path
    if denied is not None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), denied)
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)


def spawn(argv: tuple[str, ...] | list[str], env: dict[str, str], log: int | None, stdin: bytes | None) -> int:
    """The pid of `argv` started in a session of its own, its output on `log` (None: /dev/null)
    and `stdin` (None: /dev/null) written to its standard input. OSError if the exec failed."""
    null = devnull()
    out = null if log is None else log
    pipe = os.pipe() if stdin is not None else None  # both ends close-on-exec
    try:
        actions = [(os.POSIX_SPAWN_DUP2, null if pipe is None else pipe[0], 0),
                   (os.POSIX_SPAWN_DUP2, out, 1), (os.POSIX_SPAWN_DUP2, out, 2)]
        pid = os.posix_spawn(executable(argv[0], env), list(argv), env, file_actions=actions, setsid=True,
                             setsigdef=RESET_SIGNALS, setsigmask=())
    except BaseException:
        if pipe is not None:
            os.close(pipe[0])
            os.close(pipe[1])
        raise
    if pipe is not None:
        os.close(pipe[0])
        _write_all(pipe[1], stdin or b"")
    return pid


def _write_all(fd: int, data: bytes) -> None:
    """Its standard input, then EOF; a process that exited already says why by its exit."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError:
        pass
    finally:
        os.close(fd)


def inherited_fds_closed_on_exec() -> None:
    """Every descriptor above stderr is made close-on-exec: one the daemon inherited (a shell's,
    a service manager's) would otherwise reach every unit it spawns."""
    try:
        fds = [int(fd) for fd in os.listdir("/proc/self/fd")]
    except OSError:
        return
    for fd in fds:
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    os.set_inheritable(fd, False)
            except OSError:
                pass  # the listing's own descriptor, closed by now
