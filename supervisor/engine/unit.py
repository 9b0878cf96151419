"""One unit: its state machine and the task that keeps its process alive (a process run:
unit_process.py; a unit not run here: unit_elsewhere.py; readiness and liveness: health.py).

Whatever goes wrong inside a unit's task stays in that unit: an unexpected exception marks it
`failed` with the error, and its process group is SIGKILLed when the task ends for any reason."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import structlog

from ..spec import UnitSpec
from .clock import Clock
from .died_of import OomWatch
from .flag import Flag
from .health import Timing
from .installed_code import InstalledCode
from .notify_socket import NotifySocket
from .peer_checks import PeerChecks
from .probes import Prober
from .process import Child, ExitStatus, Spawner
from .race import race
from .restart_policy import RestartPolicy
from .start_cores import StartCores
from .unit_elsewhere import Elsewhere
from .unit_output import EndedRun, UnitOutput
from .unit_process import ExitUnsaid, ProcessRun
from .unit_state import STATE_EVENTS, UnitState, check_transition
from .unit_tally import ProbeTally

S = UnitState
ERROR_CLEARED_AFTER = 60.0  # seconds ready after which a unit's error is history (last_error)
CRASHED = (S.READY, S.UNHEALTHY)  # a process that ran exited (`starting` again without `waiting`)


class Unit(ProcessRun, Elsewhere):
    __slots__ = ()  # every field is in HealthChecks.__slots__ (health.py)

    def __init__(self, spec: UnitSpec, *, clock: Clock, spawner: Spawner, output: UnitOutput,
                 notify: Callable[[], NotifySocket | None], policy: RestartPolicy, timing: Timing,
                 on_change: Callable[[Unit], None], unpaused: Flag | None = None) -> None:
        self.spec = spec
        self.clock, self.spawner, self.output = clock, spawner, output
        self.policy, self.timing, self._on_change = policy, timing, on_change
        self._notify_socket = notify  # the supervisor's, made at the first unit that needs it
        self.state = S.STOPPED
        self.since = clock.time()
        self.last_start_seconds: float | None = None  # spawn -> ready, the last time it started
        self.child: Child | None = None
        self.started_at: float | None = None
        self.restarts = 0
        self.failed_attempts = 0  # starts that never became ready since the last start()
        self.retry_at: float | None = None  # when a failed unit is tried again
        self.last_exit: ExitStatus | None = None
        self._error: str | None = None
        self.last_error: str | None = None  # the latest error ever, kept when `error` is cleared
        self.last_error_at: float | None = None
        self.refused = False  # the last start was refused before a spawn (log file, address in use)
        self.retry_soon: float | None = None  # ...for a cause that passes by itself: seconds to the next try
        self.health: str | None = None
        self.dependencies: list[Unit] = []
        self.ready_event = Flag()
        self.wanted = False
        self.before_stop: Callable[[Unit], Awaitable[None]] | None = None  # awaited before a ready unit stops
        self.start_gate: Callable[[Unit], Awaitable[None]] | None = None  # its wait when spec.start_beside
        self.start_cores: StartCores | None = None  # the turns of spec.cpu_bound_start (start_cores.py)
        self._held = Flag()  # stopped by the admin: no automatic start until `synsup start UNIT`
        self.waiting_for_resume = False  # exited while paused: nothing happens until `synsup resume`
        self._adopted: Child | None = None  # a process an earlier daemon started, to supervise first
        self._exit_unsaid: ExitUnsaid | None = None  # an exit said at the next fork (ProcessRun._record_exit)
        self._prespawned: Child | None = None  # forked at the last exit, for the task to take (_respawn_now)
        self._prespawned_spec: UnitSpec | None = None
        self._ready_at: float | None = None
        self._ended_run: EndedRun | None = None
        if unpaused is None:
            unpaused = Flag()
            unpaused.set()
        self.unpaused = unpaused  # cleared while synsup is paused: no automatic restarts
        self._stop = Flag()
        self._start_requested = Flag()
        self._idle = Flag()
        self._idle.set()
        self._notify_ready = Flag()
        self._sends_ready: bool | None = None  # learned: does this unit send READY=1?
        self._notify: NotifySocket | None = None
        self._prober = Prober(())
        self._peers: PeerChecks | None = None  # made when first asked for (HealthChecks.peers)
        self._oom: OomWatch | None = None  # the kernel's OOM kill counters at the last spawn
        self._stopped = Flag()  # its process is stopped (SIGSTOP), learnt from SIGCHLD
        self._probe_tally: ProbeTally | None = None  # made at the first check (HealthChecks.probe_tally)
        self.installed = InstalledCode()  # new code installed under the running spec?
        self._reported = False  # spec.reported: the last readiness reported (`report`)
        self._report_changed = Flag()
        self.log = structlog.get_logger().bind(unit=spec.name)

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child is not None and not self.child.exited else None

    @property
    def error(self) -> str | None:
        """Why the unit failed: gone once it has been ready for ERROR_CLEARED_AFTER since."""
        if self._error is not None and self.state is S.READY and (self.last_error_at or 0.0) <= self.since \
                and self.clock.time() - self.since >= ERROR_CLEARED_AFTER:
            return None
        return self._error

    @error.setter
    def error(self, error: str | None) -> None:
        self._error = error
        if error is not None:
            self.last_error, self.last_error_at = error, self.clock.time()

    # -- the one place state changes
    def set_state(self, new: UnitState, error: str | None = None, **fields: object) -> None:
        self._say_exit()  # an exit held for a crash restart's fork is said before anything after it
        self.withdraw_prespawned()  # a restart not at once after all: its early fork is undone
        if not self._enter(new, error):
            return
        self.log.info(STATE_EVENTS[new], pid=self.pid, **({"error": error} if error else {}), **fields)
        self._on_change(self)

    def _enter(self, new: UnitState, error: str | None = None) -> bool:
        """The change of state itself, unsaid (set_state says it); False when already in it."""
        if self.error is None:
            self._error = None  # cleared while ready: it stays history when the unit leaves ready
        if error is not None:
            self.error = error
        if new is self.state:
            return False
        check_transition(self.state, new)
        self.state, self.since = new, self.clock.time()
        if new is S.READY:
            self.ready_event.set()
            if self.started_at is not None:  # what its next restart will cost, about
                self.last_start_seconds = max(0.0, self.since - self.started_at)
        else:
            self.ready_event.clear()
        return True

    # -- commands
    def start(self, reset: bool = False) -> None:
        if reset:
            self.policy.reset()
            self.restarts = 0
        self.failed_attempts = 0
        if not self._idle.is_set():
            return
        self.wanted = True
        self._stop.clear()
        self._idle.clear()
        self._start_requested.set()

    def adopt(self, child: Child) -> None:
        """Supervise a process an earlier daemon started instead of spawning one: ready once its
        probes answer (it sent READY=1 long ago), restarted only when it next has to be."""
        self._adopted = self.child = child
        self.started_at = self.clock.time()
        self.output.adopted()
        self.start()

    async def stop(self) -> None:
        if self.before_stop is not None and self.wanted and self.state is S.READY:
            try:
                await self.before_stop(self)  # e.g. its proxy server drained of requests first
            except Exception:  # a bug there never keeps a unit from stopping
                self.log.exception("unit.before_stop_failed")
        self.wanted = False
        self._stop.set()
        await self._idle.wait()
        if self.state is S.FAILED:
            self.set_state(S.STOPPED)

    def send_signal(self, sig: int) -> None:
        if self.pid is not None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            self.log.info("unit.signalled", pid=self.pid, signal=sig)

    @property
    def held(self) -> bool:
        """Stopped by the admin (who was warned): no automatic start, and no dependent waits for it."""
        return self._held.is_set()

    @held.setter
    def held(self, value: bool) -> None:
        if value:
            self._held.set()
        else:
            self._held.clear()

    async def ready_or_held(self) -> None:
        """What a dependent waits for: this unit ready, or held by the admin."""
        if self.held:
            return
        ready, held = self.ready_event.waiter(), self._held.waiter()
        try:
            await asyncio.wait({ready, held}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            held.cancel()

    @property
    def blocked_by(self) -> Unit | None:
        """The dependency that keeps this waiting unit from ever starting (failed, or stopped
        and not wanted), directly or through another dependency."""
        if self.state is not S.WAITING:
            return None
        for dependency in self.dependencies:
            if dependency.held:
                continue  # not waited for
            if dependency.state is S.FAILED or (dependency.state is S.STOPPED and not dependency.wanted):
                return dependency
            if dependency.blocked_by is not None:
                return dependency
        return None

    @property
    def settled(self) -> bool:
        """Ready, failed or stopped with no start pending, or waiting on a dependency that
        cannot become ready: nothing more will happen without a command."""
        if self.blocked_by is not None or self.waiting_for_resume:
            return True
        return self.state in (S.READY, S.FAILED, S.STOPPED) and not self._start_requested.is_set()

    # -- the task
    async def supervise(self) -> None:
        try:
            while True:
                await self._start_requested.wait()
                self._start_requested.clear()
                try:
                    await self._contained(self._life())
                finally:
                    self._kill_child()
                    self._give_back_turn()
                    self._idle.set()
        finally:
            self._kill_child()
            self._give_back_turn()

    async def _contained(self, work: Awaitable[None]) -> None:
        """Run `work`; an unexpected exception fails this unit, never the daemon."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.log.exception("unit.internal_error")
            self.wanted = False
            self._kill_child()
            self.set_state(S.FAILED, f"internal error: {type(e).__name__}: {e}")

    def _give_back_turn(self) -> None:
        if self.start_cores is not None:
            self.start_cores.release(self)

    def _kill_child(self) -> None:
        self.withdraw_prespawned()
        self._ended_run = None  # an exit never recorded (an internal error): no later one reads its range
        if self.child is not None and not self.child.exited:
            self.child.force_close()

    def _on_notify(self, fields: dict[str, str]) -> None:
        if fields.get("READY") == "1":
            self._sends_ready = True
            self._notify_ready.set()

    async def _life(self) -> None:
        if self.spec.notify and self._notify is None:
            self._notify = self._notify_socket()
        while self.wanted:
            self.retry_at = None
            if not (self.state in CRASHED and self._dependencies_met() and self._turn_now()):
                # not a crash restart that may go straight from the exit to its fork
                self.set_state(S.WAITING)
                if not self._dependencies_met() and await self._race(self._dependencies_ready()) == "stop":
                    break
                if not await self._turn_for_a_core():
                    break
                if self.spec.start_beside is None and not self._dependencies_met():
                    self._give_back_turn()  # a dependency went down while this one waited for a core
                    continue
            ready_for = await self._run_once()
            if not self.wanted:
                break
            if ready_for is None:
                self.failed_attempts += 1
            if not self.unpaused.is_set() and not await self._paused():
                break
            delay = self._delay_after_exit(ready_for)
            if delay is None:
                if not await self._failed():
                    break
                if not self.unpaused.is_set() and not await self._until_resumed():
                    break  # paused during the cool-down: still failed, no retry until resumed
                continue
            self.restarts += 1
            if delay > 0:
                self.set_state(S.BACKOFF, delay=delay)
                if await self._race(self.clock.sleep(delay)) == "stop":
                    break
            if not self.unpaused.is_set() and not await self._paused():
                break  # paused during the backoff: no automatic restart until resumed
        self.set_state(S.STOPPED)

    def _delay_after_exit(self, ready_for: float | None) -> float | None:
        if self.retry_soon is not None:
            return self.retry_soon  # not a crash: no step towards `failed`
        return None if self.refused else self.policy.delay_after_exit(ready_for)

    async def _paused(self) -> bool:
        """Exited while synsup is paused: no restart until resumed (True) or stopped (False)."""
        self.set_state(S.EXITED)
        return await self._until_resumed()

    async def _until_resumed(self) -> bool:
        """Nothing happens until `synsup resume` (True) or a stop (False): settled meanwhile."""
        self.waiting_for_resume = True
        self._on_change(self)  # settled now: a wait for this unit returns
        try:
            return await self._race(self.unpaused.wait()) != "stop"
        finally:
            self.waiting_for_resume = False

    async def _failed(self) -> bool:
        """Crash loop: `failed` until the cool-down ends (True: try again) or a stop (False)."""
        self.set_state(S.FAILED, self.error if self.refused else f"failed to become ready "
                       f"{self.policy.failed_starts} times in a row; last: {self.error}")
        retry = self.timing.failed_retry
        if retry is None:
            self.wanted = False
            await self._stop.wait()
            return False
        self.retry_at = self.clock.time() + retry
        self._on_change(self)
        if await self._race(self.clock.sleep(retry)) == "stop":
            return False
        self.policy.reset()
        self.log.info("unit.retrying", after=retry)
        return True

    def _dependencies_met(self) -> bool:
        """Every dependency ready or held now: no wait (a crash restart goes straight to its fork)."""
        return all(d.held or d.ready_event.is_set() for d in self.dependencies)

    async def _dependencies_ready(self) -> None:
        if self.spec.start_beside is not None and self.start_gate is not None:
            await self.start_gate(self)  # beside some of them, when the source's check says so
            return
        for dependency in self.dependencies:
            await dependency.ready_or_held()

    def _turn_now(self) -> bool:
        """No turn for a core needed, or one taken now (start_cores.py)."""
        cores = self.start_cores
        if cores is None or not self.spec.cpu_bound_start or self._adopted is not None or self.spec.argv is None:
            return True
        return cores.take(self)

    async def _turn_for_a_core(self) -> bool:
        """A start that keeps a core busy for seconds waits for its turn (start_cores.py), saying
        so in its health; False when stopped meanwhile."""
        cores = self.start_cores
        if self._turn_now():
            return True
        assert cores is not None
        busy = [u.spec.name for u in cores.computing()]
        self.health = f"waiting for a core ({cores.cores}): {', '.join(busy)} starting"
        self.log.info("unit.waiting_for_core", starting=busy, cores=cores.cores)
        self._on_change(self)
        began = self.clock.monotonic()
        try:
            if await self._race(cores.wait_turn(self)) == "stop":
                return False
        finally:
            self.health = None
        self.log.info("unit.core_free", waited=round(self.clock.monotonic() - began, 3))
        return True

    async def _run_once(self) -> float | None:
        """One process from spawn to exit; seconds it was ready, or None if it never was."""
        if self._prespawned is None:  # else cleared before its fork: a READY=1 since is its own
            self._notify_ready.clear()
        self.health = None  # the last run's verdict does not describe the new process
        if not self._start_quietly():
            self.set_state(S.STARTING)
        self._prober = Prober(self.spec.probes)
        try:
            if self._adopted is not None:
                return await self._supervise_adopted(self._adopted)
            if self.spec.reported:
                await self._follow_reports()
                return None
            return await (self._watch_external() if self.spec.argv is None else self._spawn_and_supervise())
        finally:
            self._prober.close()

    def _race(self, work: Awaitable[object], exited: asyncio.Future[int | None] | None = None,
              timeout: float | None = None) -> Coroutine[Any, Any, str]:
        """`work` raced against this unit's stop, its child's exit and `timeout` (race.py)."""
        return race(self._stop, work, exited, timeout)
