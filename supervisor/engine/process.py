"""Spawning a unit's process in its own session, knowing when it exits, and killing all it
left behind.

Exit is detected from the pid (a pidfd becomes readable when the process exits), never from
EOF on the output pipe: a grandchild holding stdout cannot hide a dead unit. When the leader
has exited, its process group and every process it left behind (the daemon is a child
subreaper, so descendants that `setsid()` away are reparented to it; they carry the unit's
private owner mark, `owner_mark`) are SIGKILLed and reaped."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

import psutil
import structlog

from ..owner_mark import VARIABLE, unit_mark, unit_of
from ..spec import UnitSpec
from .reaper import REAPER, direct_children
from .reaper import kill as _kill
from .spawn import Spawned, inherited_fds_closed_on_exec, spawn
from .unit_output import UnitOutput

__all__ = ["REAPER", "Child", "ExitStatus", "Spawner", "become_subreaper", "stop_child"]

UNIT_VARIABLE = "SYNSUP_UNIT"  # in every unit's environment: its name (for the unit to read; no marker)
PR_SET_CHILD_SUBREAPER = 36
DRAIN_AFTER_EXIT = 1.0  # seconds to keep reading output that was in flight when the unit exited
ESCAPED_AFTER = 0.005  # seconds from a unit's exit to the look for descendants that left its group

log = structlog.get_logger()


def become_subreaper() -> bool:
    """Orphaned descendants of our units are reparented to us, not to init."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def return_free_heap() -> bool:
    """Give the C heap's free pages back to the kernel (glibc's malloc_trim): a start of many
    units leaves freed peaks (spawns, log lines, status replies) counted in the daemon's RSS."""
    try:
        return bool(ctypes.CDLL(None).malloc_trim(0))
    except (OSError, AttributeError):  # not glibc
        return False


def _signal_name(number: int) -> str:
    """SIGKILL for 9 (signal.valid_signals() built a set of every signal: 0.1 ms of each exit)."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


@dataclass(frozen=True)
class ExitStatus:
    code: int | None
    signal: str | None
    at: float
    killed_after: float | None = None  # synsup's own SIGKILL after this stop timeout
    oom: str | None = None  # a SIGKILL the kernel says was for memory: how it says so

    @property
    def oom_killed(self) -> bool:
        return self.oom is not None

    @classmethod
    def from_returncode(cls, returncode: int | None, at: float, killed_after: float | None = None,
                        oom: str | None = None) -> ExitStatus:
        if returncode is None:
            return cls(None, None, at)
        if returncode < 0:
            name = _signal_name(-returncode)
            sigkill = -returncode == signal.SIGKILL
            return cls(None, name, at, killed_after if sigkill else None, oom if sigkill and not killed_after else None)
        return cls(returncode, None, at)

    def describe(self) -> str:
        if self.killed_after is not None:
            return f"killed by synsup after {self.killed_after:g}s (did not stop on SIGTERM)"
        if self.oom is not None:
            return f"killed by SIGKILL: out of memory ({self.oom})"
        if self.signal:
            return f"killed by {self.signal}"
        if self.code is None:
            return "exited (status unknown: adopted from an earlier synsup, which reaps no more)"
        return f"exited with code {self.code}"

    def as_json(self) -> dict[str, object]:
        return {"code": self.code, "signal": self.signal, "at": self.at, "oom_killed": self.oom_killed}


def _unit_marked(pid: int, token: str | None) -> str | None:
    try:
        return unit_of(psutil.Process(pid).environ(), token)
    except (psutil.Error, OSError):
        return None


class Child:
    """A running unit process: the leader of its own process group."""

    # one per unit: no __dict__
    __slots__ = ("pid", "name", "token", "_popen", "_output", "killed_after", "_loop", "_exited", "_pidfd",
                 "_out", "_waiters", "on_reaped")

    def __init__(self, popen: subprocess.Popen[bytes] | Spawned, name: str, output: UnitOutput,
                 token: str | None = None) -> None:
        self.pid = popen.pid
        self.name, self.token = name, token
        self._popen, self._output = popen, output
        self.killed_after: float | None = None
        # called as soon as the exit is known, before anything waiting on it hears of it: the
        # unit's successor may be forked right there (ProcessRun._respawn_now)
        self.on_reaped: Callable[[], None] | None = None
        self._loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[int | None] = self._loop.create_future()  # None: status unknown (adopted)
        self._waiters: list[asyncio.Future[int | None]] = []  # exit_waiter's, done with _exited
        self._pidfd = os.pidfd_open(self.pid)
        self._loop.add_reader(self._pidfd, self._on_exit)
        self._out: int | None = None
        if popen.stdout is not None:
            self._out = popen.stdout.fileno()
            os.set_blocking(self._out, False)
            self._loop.add_reader(self._out, self._on_output)
        REAPER.leaders[self.pid] = self

    @property
    def exited(self) -> bool:
        return self._exited.done()

    async def wait(self) -> int | None:
        return await asyncio.shield(self._exited)

    def exit_waiter(self) -> asyncio.Future[int | None]:
        """A future of the exit code that may be cancelled (not the exit itself): no task. It is
        done in the same turn of the loop as the exit (asyncio.shield's took one turn more, on
        the way from a crash to its respawn)."""
        waiter: asyncio.Future[int | None] = self._loop.create_future()
        if self._exited.done():
            waiter.set_result(self._exited.result())
        else:
            self._waiters.append(waiter)
        return waiter

    def _exit_is(self, returncode: int | None) -> None:
        self._exited.set_result(returncode)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(returncode)

    def signal_group(self, sig: int) -> None:
        if self._exited.done():
            return  # reaped: the group id may belong to someone else by now
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def kill_leftovers(self) -> None:
        """SIGKILL the process group and every descendant that escaped it (marked with our unit)."""
        self.signal_group(signal.SIGKILL)
        self.kill_escaped()

    def kill_escaped(self) -> None:
        """SIGKILL every descendant that left the group (reparented to us, marked with our unit)."""
        REAPER.escaped_due.discard(self)
        for pid in direct_children():
            if pid in REAPER.leaders or _unit_marked(pid, self.token) != self.name:
                continue
            try:
                tree = [pid] + [p.pid for p in psutil.Process(pid).children(recursive=True)]
            except psutil.Error:
                tree = [pid]
            for each in tree:
                _kill(each)
            REAPER.leftovers.update(tree)
            log.warning("unit.leftovers_killed", unit=self.name, pids=tree)

    def _on_exit(self) -> None:
        # the leader is a zombie until reaped, so its group id cannot be reused: kill the group first
        self.signal_group(signal.SIGKILL)
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = self.pid, 255 << 8  # reaped elsewhere: the status is lost
        if pid == 0:
            return
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        REAPER.leaders.pop(self.pid, None)  # before the hook: its fork may have this pid again
        hook, self.on_reaped = self.on_reaped, None
        if hook is not None:
            hook()
        returncode = os.waitstatus_to_exitcode(status)
        self._popen.returncode = returncode
        self._exit_is(returncode)
        # what left the group is looked for once the unit's next process is forked: reading every
        # child's entry in /proc (0.4 ms with 500 units) is no longer between a crash and its restart
        self._loop.call_later(ESCAPED_AFTER, self.kill_escaped)
        REAPER.escaped_due.add(self)  # a daemon that stops sooner looks at once (Reaper.kill_all)
        self._loop.call_later(DRAIN_AFTER_EXIT, self._close_output)

    def _on_output(self) -> None:
        assert self._out is not None
        try:
            data = os.read(self._out, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._output.write(data)
        else:
            self._close_output()

    def _close_output(self) -> None:
        if self._out is not None:
            self._loop.remove_reader(self._out)
            self._out = None
        if self._popen.stdout is not None:
            self._popen.stdout.close()

    def force_close(self) -> None:
        """The task that owned this child is gone: kill everything now, reap what is dead."""
        if not self._exited.done():
            self.kill_leftovers()
            REAPER.leftovers.add(self.pid)
            REAPER.leaders.pop(self.pid, None)
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._popen.returncode = -signal.SIGKILL  # the reaper reaps it (leftovers), not Popen
            self._exit_is(-signal.SIGKILL)
        self._close_output()


class Spawner:
    """Starts unit processes; a test can put another spawner in its place."""

    def __init__(self, extra_env: dict[str, str] | None = None) -> None:
        self.extra_env = extra_env or {}
        self.token: str | None = None  # the state dir's owner token (`owner_mark`), set by the daemon
        self._asked: list[_Asked] = []  # spawns asked for in this turn of the loop (`spawn`)
        self._asked_loop: asyncio.AbstractEventLoop | None = None  # the loop _fork_asked is due in
        inherited_fds_closed_on_exec()  # posix_spawn closes nothing: no inherited fd reaches a unit

    async def spawn(self, spec: UnitSpec, env: dict[str, str], output: UnitOutput,
                    forked: Callable[[Child], None] | None = None) -> Child:
        """Forked with every other spawn asked for in the same turn of the loop, one right after
        another (`_fork_asked`); each unit's bookkeeping of its fork (logs, listeners) comes after
        all of them. A start of 500 units forked them between each unit's own work: 1 ms a unit,
        of which the fork is 0.6. One turn of the loop more for a lone spawn (a crash restart of a
        stable unit does not come here: ProcessRun._respawn_now). `forked` is called right after
        the fork, before any other callback of the loop: what must know the new pid before the
        loop reads anything (its notify messages, its stops, units.json for a re-exec) is told
        there, not when the task wakes."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Child] = loop.create_future()
        if self._asked_loop is not loop:  # a loop closed with a batch never forked: nobody waits for it
            self._asked, self._asked_loop = [], loop
        if not self._asked:
            loop.call_soon(self._fork_asked)
        self._asked.append(_Asked(spec, env, output, future, forked))
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                future.result().force_close()  # forked as its task was cancelled: nobody will supervise it
            raise

    def _fork_asked(self) -> None:
        asked, self._asked = self._asked, []
        for index, each in enumerate(asked):
            if each.future.done():
                continue  # its task was cancelled meanwhile
            try:
                child = self.spawn_now(each.spec, each.env, each.output)
            except Exception as e:  # that unit's own failure (OSError: no such program), said by its task
                each.future.set_exception(e)
                continue
            except BaseException:
                # the rest of the batch is forked at the next turn (the loop may go on: a
                # CancelledError out of a callback is only logged); none waits for ever
                rest = [a for a in asked[index + 1:] if not a.future.done()]
                if rest:
                    if not self._asked:
                        asyncio.get_running_loop().call_soon(self._fork_asked)
                    self._asked[:0] = rest
                each.future.set_exception(RuntimeError(f"spawn of {each.spec.name} interrupted"))
                raise
            try:
                if each.forked is not None:
                    each.forked(child)
            except Exception as e:
                child.force_close()
                each.future.set_exception(e)
                continue
            each.future.set_result(child)

    def spawn_now(self, spec: UnitSpec, env: dict[str, str], output: UnitOutput) -> Child:
        """`spawn` without a turn of the loop: from a callback (a crash restart's, ProcessRun._respawn_now)."""
        assert spec.argv is not None
        log = output.open_for_child()  # the unit writes its log itself: nothing of it hangs on us
        try:
            if spec.cwd is None:
                started: subprocess.Popen[bytes] | Spawned = Spawned(spawn(spec.argv, self.environment(spec, env),
                                                                           log, spec.stdin))
            else:
                started = self._popen(spec, env, log)
        finally:
            if log is not None:
                os.close(log)
        try:
            return Child(started, spec.name, output, self.token)
        except BaseException:  # no pidfd for it (EMFILE): a process nobody would supervise
            _kill(started.pid)
            REAPER.leftovers.add(started.pid)
            raise

    def _popen(self, spec: UnitSpec, env: dict[str, str], log: int | None) -> subprocess.Popen[bytes]:
        """A unit with a working directory of its own (posix_spawn cannot chdir before Python 3.13)."""
        assert spec.argv is not None
        popen = subprocess.Popen(
            spec.argv,
            stdin=subprocess.PIPE if spec.stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL if log is None else log,
            stderr=subprocess.STDOUT,
            env=self.environment(spec, env),
            cwd=spec.cwd,
            start_new_session=True,
        )
        if spec.stdin is not None and popen.stdin is not None:
            try:
                popen.stdin.write(spec.stdin)
                popen.stdin.close()
            except OSError:
                pass  # it exited already: its exit says why
        return popen

    def environment(self, spec: UnitSpec, env: dict[str, str]) -> dict[str, str]:
        """The unit's own, its name, and our private mark (nothing of it may come from outside)."""
        full = {k: v for k, v in {**env, **self.extra_env}.items() if k != VARIABLE}
        full[UNIT_VARIABLE] = spec.name
        if self.token:
            full[VARIABLE] = unit_mark(self.token, spec.name)
        return full


@dataclass(slots=True)
class _Asked:
    spec: UnitSpec
    env: dict[str, str]
    output: UnitOutput
    future: asyncio.Future[Child]
    forked: Callable[[Child], None] | None = None


async def stop_child(child: Child, exited: asyncio.Future[int | None], timeout: float) -> None:
    """SIGCONT and SIGTERM to the group (a stopped process cannot act on SIGTERM); SIGKILL to
    the group if it is still there after `timeout`."""
    child.signal_group(signal.SIGCONT)
    child.signal_group(signal.SIGTERM)
    try:
        async with asyncio.timeout(timeout):
            await asyncio.shield(exited)
    except TimeoutError:
        child.killed_after = timeout
        child.signal_group(signal.SIGKILL)
        await exited
