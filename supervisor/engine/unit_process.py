"""One run of a unit's process: spawned (its clean environment; an exec the kernel would refuse
is refused first), supervised until it exits (ready, then alive), the exit recorded with what it
died of. A part of Unit (as health.py), kept apart so that the state machine reads on its own."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

import structlog

from ..spec import UnitSpec
from .child_stops import CHILD_STOPS
from .died_of import OomWatch, died_of
from .environment import exec_refusal, unit_environment
from .flag import Flag
from .health import HealthChecks
from .installed_code import InstalledCode
from .notify_socket import NotifySocket
from .preflight import Refusal, preflight
from .process import Child, ExitStatus, Spawner, stop_child
from .restart_policy import RestartPolicy
from .start_cores import StartCores
from .unit_output import EndedRun, UnitOutput
from .unit_state import STATE_EVENTS, UnitState

S = UnitState
TAIL_FOR_ERRORS = 40  # output lines searched for the exception a unit died of


class ProcessRun(HealthChecks):
    """Mixed into Unit: the attributes below are the Unit's (its __slots__)."""

    __slots__ = ()

    spawner: Spawner
    output: UnitOutput
    installed: InstalledCode
    state: UnitState
    child: Child | None
    started_at: float | None
    last_exit: ExitStatus | None
    wanted: bool
    refused: bool
    retry_soon: float | None
    log: structlog.typing.FilteringBoundLogger
    _adopted: Child | None
    _notify: NotifySocket | None
    _oom: OomWatch | None
    _stopped: Flag
    _on_change: Callable[..., None]
    _exit_unsaid: ExitUnsaid | None
    _prespawned: Child | None  # forked at its predecessor's exit (_respawn_now), not yet taken by the task
    _prespawned_spec: UnitSpec | None  # the spec it was forked with
    _ready_at: float | None  # clock.monotonic() when the running process became ready
    _ended_run: EndedRun | None  # the exited process's output, when its successor's run began first
    _stop: Flag
    policy: RestartPolicy
    start_cores: StartCores | None

    def set_state(self, new: UnitState, error: str | None = None, **fields: object) -> None:
        raise NotImplementedError

    def _enter(self, new: UnitState, error: str | None = None) -> bool:
        raise NotImplementedError

    async def _race(self, work: Awaitable[object], exited: asyncio.Future[int | None] | None = None,
                    timeout: float | None = None) -> str:
        raise NotImplementedError

    def _dependencies_met(self) -> bool:
        raise NotImplementedError

    async def _spawn_and_supervise(self) -> float | None:
        child = await self._spawn()
        if child is None:
            return None
        self.started_at = self.clock.time()
        self._oom = OomWatch(child.pid)
        self._prober.owner_pid = child.pid  # probes must reach this process, not another on its address
        child.on_reaped = self._respawn_now
        self.output.note(f"started pid {child.pid}")
        self.output.watch_from_here()
        self.log.info("unit.spawned", pid=child.pid)
        self._on_change(self)
        exited = child.exit_waiter()
        try:
            ready_for = await self._supervise_child(child, exited)
        finally:
            CHILD_STOPS.unwatch(child.pid)
            self._unhear(child.pid)
        self._record_exit(child, await exited)
        return ready_for

    async def _spawn(self) -> Child | None:
        """The new process, or None when refused or the exec failed. Its environment lives only
        here, not in the frame that supervises the process for as long as it runs."""
        if self._prespawned is not None and self._prespawned_spec is not self.spec:
            self.withdraw_prespawned()  # given a new spec since (a reload): forked with the old one
        prespawned, self._prespawned = self._prespawned, None
        if prespawned is not None:  # forked at the exit already
            self.retry_soon, self.refused = None, False
            self.child = prespawned
            self._say_exit()
            return prespawned
        env = self._environment()
        refusal = self._refusal(env)
        self.retry_soon = refusal.retry_after if refusal is not None else None
        self.refused = refusal is not None and self.retry_soon is None
        if refusal is not None:
            self._say_exit()
            self.error = refusal.reason
            self.log.error("unit.refused", error=refusal.reason)
            return None
        self._begin_run()
        before = self.child
        try:
            if isinstance(self.spawner, Spawner):
                child = await self.spawner.spawn(self.spec, env, self.output, forked=self._forked)
            else:  # a test's spawner: no batch, no window between its fork and this task
                child = await self.spawner.spawn(self.spec, env, self.output)
        except OSError as e:
            self._say_exit()
            self.error = f"cannot start {(self.spec.argv or ('?',))[0]}: {e.strerror or e}"
            self.log.error("unit.spawn_failed", error=self.error)
            return None
        except BaseException:
            forked = self.child
            if forked is not None and forked is not before:  # forked, its task cancelled before it woke
                CHILD_STOPS.unwatch(forked.pid)
                self._unhear(forked.pid)
            raise
        if child is not self.child:
            self._forked(child)  # a spawner that does not say when it forked (a test's)
        self._say_exit()
        return child

    def _forked(self, child: Child) -> None:
        """Right after the fork, before the loop runs anything else (Spawner.spawn's `forked`):
        the unit's process from now on (a re-exec records it), its stops and its notify messages."""
        self.child = child
        self._just_forked(child)

    def _refusal(self, env: dict[str, str]) -> Refusal | None:
        """Why the process must not be spawned now (its log, its addresses, an exec the kernel refuses)."""
        return preflight(self.spec, self.output) or self._exec_refusal(env)

    def _begin_run(self) -> None:
        """Right before the fork: the code it runs and where its output begins are noted."""
        self.installed.at_spawn(self.spec)
        self.output.new_run()

    def _just_forked(self, child: Child) -> None:
        """Before the loop runs again: its stops (SIGCHLD) and its notify messages (READY=1) are this unit's."""
        self._watch_stops(child.pid)
        self._hear(child.pid)

    def _respawn_now(self) -> None:
        """The exit callback of a ready unit's process (Child.on_reaped), before its task hears of
        the exit: a crash the task will answer with a restart at once gets its new process here,
        and the task takes it (`_spawn`). The way to the task and its bookkeeping of the exit
        (its log's last lines, the kernel's OOM record) were 0.7 ms of the 1.1 ms between a crash
        and its fork, with 500 units. Whatever makes the task do anything else (a stop, a pause,
        a dependency down, a backoff, a new spec, a re-exec) withdraws the process (`withdraw_prespawned`)."""
        try:
            if not self._restarts_at_once():
                return
            spec, env = self.spec, self._environment()
            if self._refusal(env) is not None:
                return  # the task refuses the start, saying why
            self._ended_run = self.output.ended_run()
            self._notify_ready.clear()  # a READY=1 of the new process from now on counts
            self._begin_run()
            child = self._prespawned = self.spawner.spawn_now(spec, env, self.output)
            self._prespawned_spec = spec
            self._just_forked(child)
        except OSError as e:  # the task tries again, and says why if it cannot either
            self.log.warning("unit.respawn_now_failed", error=str(e))
        except Exception:  # never in the way of the exit's own handling (process.Child._on_exit)
            self.log.exception("unit.respawn_now_failed")

    def _restarts_at_once(self) -> bool:
        """What the task will do with this exit, decided as it will decide it (Unit._life): a ready,
        wanted, unpaused unit, up long enough for no backoff, its dependencies ready, no turn for a
        core to wait for, spawned by a spawner that can fork from a callback."""
        ready_at = self._ready_at
        return (self.state is S.READY and self.wanted and not self._stop.is_set() and self.unpaused.is_set()
                and ready_at is not None and self.retry_soon is None and not self.refused
                and self._adopted is None and self.spec.argv is not None and not self.spec.reported
                and isinstance(self.spawner, Spawner)
                and (self.start_cores is None or not self.spec.cpu_bound_start)
                and self.policy.restarts_at_once(self.clock.monotonic() - ready_at)
                and self._dependencies_met())

    def withdraw_prespawned(self) -> None:
        """A process forked at its predecessor's exit that the task will not take: killed and reaped."""
        child, self._prespawned = self._prespawned, None
        if child is None:
            return
        CHILD_STOPS.unwatch(child.pid)
        self._unhear(child.pid)
        child.force_close()
        self.log.info("unit.respawn_withdrawn", pid=child.pid)

    async def _supervise_adopted(self, child: Child) -> float | None:
        self._adopted = None
        self._prober.owner_pid = child.pid
        self._notify_ready.set()  # it said READY=1 to the daemon that started it
        self._hear(child.pid)
        self.log.info("unit.adopted", pid=child.pid)
        self._on_change(self)
        exited = child.exit_waiter()
        try:
            ready_for = await self._supervise_child(child, exited)
        finally:
            self._unhear(child.pid)
        self._record_exit(child, await exited)
        return ready_for

    async def _supervise_child(self, child: Child, exited: asyncio.Future[int | None]) -> float | None:
        self._ready_at = None
        outcome = await self._race(self._readiness(), exited, self.spec.start_timeout)
        ready_at = None
        if outcome == "done":
            ready_at = self._ready_at = self.clock.monotonic()
            self.set_state(S.READY)
            outcome = await self._stay_alive(exited)
            self._ready_at = None
            if outcome == "done":
                self.set_state(S.UNHEALTHY)
                await stop_child(child, exited, self.spec.stop_timeout)
        elif outcome == "timeout":
            self.error = f"not ready within {self.spec.start_timeout:g}s ({self.health or 'no answer'})"
            self.log.warning("unit.start_timeout", pid=child.pid)
            await stop_child(child, exited, self.spec.stop_timeout)
        if outcome == "stop":
            self.set_state(S.STOPPING)
            await stop_child(child, exited, self.spec.stop_timeout)
        return None if ready_at is None else self.clock.monotonic() - ready_at

    async def _stay_alive(self, exited: asyncio.Future[int | None]) -> str:
        """The liveness race of a ready process. One that only a stop (SIGSTOP) can make
        unhealthy waits on a bare future until it is stopped: no task per running unit."""
        if self._stops_only():
            outcome = await self._race(self._stopped.waiter(), exited)
            if outcome != "done":
                return outcome
        return await self._race(self._liveness(), exited)

    def _record_exit(self, child: Child, returncode: int | None) -> None:
        oom = self._oom.evidence() if self._oom is not None and returncode == -signal.SIGKILL else None
        status = ExitStatus.from_returncode(returncode, self.clock.time(), child.killed_after, oom)
        self.last_exit = status
        ended, self._ended_run = self._ended_run, None  # set when its successor's run began already
        if not self.wanted:
            self.output.note(f"pid {child.pid} {status.describe()}")
            self.set_state(S.STOPPED)
            self._on_change(self)
            return
        if self.state is not S.UNHEALTHY and not (self.error and self.error.startswith("not ready")):
            self.error = f"{status.describe()}: {self._died_of(ended)}".rstrip(": ")
        # its note, its log line and the listeners are told after the next fork when it is
        # restarted at once (half a millisecond between a crash and its restart), else at the
        # next change of state (set_state), in the same order as ever
        self._exit_unsaid = ExitUnsaid(child.pid, status)

    def _say_exit(self) -> None:
        """The exit held by _record_exit, and the `starting` that followed it quietly, said now."""
        unsaid, self._exit_unsaid = self._exit_unsaid, None
        if unsaid is None:
            return
        self.output.note(f"pid {unsaid.pid} {unsaid.status.describe()}")
        self.log.warning("unit.exited", pid=unsaid.pid, status=unsaid.status.describe())
        if unsaid.starting:
            self.log.info(STATE_EVENTS[S.STARTING], pid=None)
        self._on_change(self)

    def _start_quietly(self) -> bool:
        """A crash restart goes to `starting` without a word until its fork (_say_exit); False
        when this is not one (nothing held since an exit)."""
        unsaid = self._exit_unsaid
        if unsaid is None or self.spec.argv is None or self._adopted is not None or self.spec.reported:
            return False
        self._enter(S.STARTING)
        unsaid.starting = True
        return True

    def _died_of(self, ended: EndedRun | None) -> str:
        """The exception the process died of: what the admin needs, not the closing banner."""
        return died_of(self.output.last(TAIL_FOR_ERRORS, ended))

    def _hear(self, pid: int) -> None:
        """The notify messages of `pid` (and of its descendants) are this unit's."""
        if self._notify is not None:
            self._notify.listen(pid, self._on_notify)

    def _unhear(self, pid: int) -> None:
        if self._notify is not None:
            self._notify.forget(pid)

    def _on_notify(self, fields: dict[str, str]) -> None:
        raise NotImplementedError

    def _exec_refusal(self, env: dict[str, str]) -> Refusal | None:
        """The kernel would refuse this exec ("Argument list too long"): failed at once, by name."""
        why = exec_refusal(self.spec.name, self.spec.argv or (), env)
        return Refusal(why) if why is not None else None

    def _environment(self) -> dict[str, str]:
        return unit_environment(self.spec.env, self._notify.path if self._notify is not None else None,
                                keep=self.spec.keep_env)


class ExitUnsaid:
    """An exit not yet noted, logged nor told to the listeners (ProcessRun._record_exit)."""

    __slots__ = ("pid", "status", "starting")

    def __init__(self, pid: int, status: ExitStatus) -> None:
        self.pid, self.status = pid, status
        self.starting = False  # the unit went to `starting` since, not yet said either
