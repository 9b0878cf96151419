"""One unit: its state machine and the task that keeps its process alive."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from .clock import Clock
from .notify import NotifySocket
from .output import UnitOutput
from .policy import RestartPolicy
from .probes import Prober
from .process import Child, ExitStatus, Spawner, stop_child
from .spec import UnitSpec
from .state import UnitState, check_transition

S = UnitState


@dataclass
class Timing:
    """Probe and readiness timings; the defaults are the documented behaviour."""

    liveness_interval: float | None = 10.0  # None: no liveness probes
    probe_timeout: float = 2.0
    failure_threshold: int = 3
    notify_grace: float = 5.0  # how long to wait for READY=1 from a unit not yet seen sending it


class Unit:
    def __init__(self, spec: UnitSpec, *, clock: Clock, spawner: Spawner, output: UnitOutput,
                 notify_path: str | None, policy: RestartPolicy, timing: Timing,
                 on_change: Callable[[Unit], None]) -> None:
        self.spec = spec
        self.clock, self.spawner, self.output = clock, spawner, output
        self.policy, self.timing, self._on_change = policy, timing, on_change
        self.notify_path = notify_path
        self.state = S.STOPPED
        self.since = clock.time()
        self.pid: int | None = None
        self.started_at: float | None = None
        self.restarts = 0
        self.last_exit: ExitStatus | None = None
        self.error: str | None = None
        self.health: str | None = None
        self.dependencies: list[Unit] = []
        self.ready_event = asyncio.Event()
        self.wanted = False
        self._stop = asyncio.Event()
        self._start_requested = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._notify_ready = asyncio.Event()
        self._sends_ready: bool | None = None  # learned: does this unit send READY=1?
        self._notify: NotifySocket | None = None
        self._prober = Prober(())
        self.log = structlog.get_logger().bind(unit=spec.name)

    # -- the one place state changes
    def set_state(self, new: UnitState, error: str | None = None, **fields: object) -> None:
        if error is not None:
            self.error = error
        if new is self.state:
            return
        check_transition(self.state, new)
        self.state, self.since = new, self.clock.time()
        if new is S.READY:
            self.ready_event.set()
        else:
            self.ready_event.clear()
        self.log.info(f"unit.{new.value}", pid=self.pid, **({"error": error} if error else {}), **fields)
        self._on_change(self)

    # -- commands
    def start(self, reset: bool = False) -> None:
        if reset:
            self.policy.reset()
            self.restarts = 0
        if not self._idle.is_set():
            return
        self.wanted = True
        self._stop.clear()
        self._idle.clear()
        self._start_requested.set()

    async def stop(self) -> None:
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
    def settled(self) -> bool:
        """Ready, failed or stopped, with no start pending."""
        return self.state in (S.READY, S.FAILED, S.STOPPED) and not self._start_requested.is_set()

    # -- the task
    async def supervise(self) -> None:
        if self.spec.notify and self.notify_path:
            self._notify = NotifySocket(self.notify_path, self._on_notify)
        try:
            while True:
                await self._start_requested.wait()
                self._start_requested.clear()
                try:
                    await self._life()
                finally:
                    self._idle.set()
        finally:
            if self._notify:
                self._notify.close()

    def _on_notify(self, fields: dict[str, str]) -> None:
        if fields.get("READY") == "1":
            self._sends_ready = True
            self._notify_ready.set()

    async def _life(self) -> None:
        while self.wanted:
            self.set_state(S.WAITING)
            if await self._race(self._dependencies_ready()) == "stop":
                break
            ready_for = await self._run_once()
            if not self.wanted:
                break
            delay = self.policy.delay_after_exit(ready_for)
            if delay is None:
                self.wanted = False
                self.set_state(S.FAILED, f"failed to become ready {self.policy.failed_starts} times "
                               f"in a row; last: {self.error}")
                return
            self.restarts += 1
            if delay > 0:
                self.set_state(S.BACKOFF, delay=delay)
                if await self._race(self.clock.sleep(delay)) == "stop":
                    break
        self.set_state(S.STOPPED)

    async def _dependencies_ready(self) -> None:
        for dependency in self.dependencies:
            await dependency.ready_event.wait()

    async def _run_once(self) -> float | None:
        """One process from spawn to exit; seconds it was ready, or None if it never was."""
        self._notify_ready.clear()
        self.set_state(S.STARTING)
        self._prober = Prober(self.spec.probes)
        try:
            return await (self._watch_external() if self.spec.argv is None else self._spawn_and_supervise())
        finally:
            self._prober.close()

    async def _spawn_and_supervise(self) -> float | None:
        try:
            child = await self.spawner.spawn(self.spec, self._environment(), self.output)
        except OSError as e:
            self.error = f"cannot start {(self.spec.argv or ('?',))[0]}: {e.strerror or e}"
            self.log.error("unit.spawn_failed", error=self.error)
            return None
        self.pid, self.started_at = child.pid, self.clock.time()
        self.output.note(f"started pid {child.pid}")
        self.log.info("unit.spawned", pid=child.pid)
        self._on_change(self)
        exited = asyncio.ensure_future(child.wait())
        ready_for = await self._supervise_child(child, exited)
        self._record_exit(await exited)
        return ready_for

    async def _supervise_child(self, child: Child, exited: asyncio.Future) -> float | None:
        outcome = await self._race(self._readiness(), exited, self.spec.start_timeout)
        ready_at = None
        if outcome == "done":
            ready_at = self.clock.monotonic()
            self.policy.became_ready()
            self.set_state(S.READY)
            outcome = await self._race(self._liveness(), exited)
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

    def _record_exit(self, returncode: int) -> None:
        status = ExitStatus.from_returncode(returncode, self.clock.time())
        pid, self.pid = self.pid, None
        self.last_exit = status
        self.output.note(f"pid {pid} {status.describe()}")
        if self.wanted:
            lines = " | ".join(self.output.last(3))
            if self.state is not S.UNHEALTHY and not (self.error and self.error.startswith("not ready")):
                self.error = status.describe() + (f": {lines}" if lines else "")
            self.log.warning("unit.exited", pid=pid, status=status.describe())
        else:
            self.set_state(S.STOPPED)
        self._on_change(self)

    async def _watch_external(self) -> float | None:
        """A service someone else runs: ready when it answers; never started or stopped."""
        outcome = await self._race(self._until_healthy(), None, self.spec.start_timeout)
        if outcome != "done":
            if outcome == "timeout":
                self.error = f"not answering within {self.spec.start_timeout:g}s ({self.health})"
            return None
        self.set_state(S.READY)
        while await self._race(self._liveness()) == "done":
            self.set_state(S.UNHEALTHY)
            if await self._race(self._until_healthy()) == "stop":
                break
            self.set_state(S.READY)
        return None

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        env.update(self.spec.env)
        if self._notify is not None:
            env["NOTIFY_SOCKET"] = self._notify.path
        return env

    async def _readiness(self) -> None:
        if self.spec.probes:
            await self._until_healthy()
        if self._sends_ready is False and self.spec.probes:
            return  # it never sent READY=1 before: judged by its listeners alone
        if self.spec.notify or not self.spec.probes:
            grace = None if self._sends_ready else self.timing.notify_grace
            try:
                async with asyncio.timeout(grace):
                    await self._notify_ready.wait()
            except TimeoutError:
                self._sends_ready = False  # judged by its listeners alone, or by staying up

    async def _until_healthy(self) -> None:
        delay = 0.02
        while (why := await self._prober.check_all(self.timing.probe_timeout)) is not None:
            self.health = why
            await self.clock.sleep(delay)
            delay = min(delay * 2, 0.5)
        self.health = "ok"

    async def _liveness(self) -> None:
        """Returns once the unit failed its probes `failure_threshold` times in a row."""
        interval = self.timing.liveness_interval
        if not self.spec.probes or interval is None:
            await asyncio.Event().wait()
            return
        failures = 0
        while failures < self.timing.failure_threshold:
            await self.clock.sleep(interval)
            why = await self._prober.check_all(self.timing.probe_timeout)
            failures = failures + 1 if why else 0
            self.health = f"failing {failures}/{self.timing.failure_threshold}: {why}" if why else "ok"
        self.error = f"unhealthy: {self.health}"

    async def _race(self, work: Awaitable, exited: asyncio.Future | None = None,
                    timeout: float | None = None) -> str:
        """Run `work` until it is done, the child exits, a stop is asked for, or time runs out."""
        work_task = asyncio.ensure_future(work)
        stop_task = asyncio.ensure_future(self._stop.wait())
        waiting = {work_task, stop_task} | ({exited} if exited is not None else set())
        try:
            done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            work_task.cancel()
            stop_task.cancel()
        if stop_task in done:
            return "stop"
        if exited is not None and exited in done:
            return "exited"
        if work_task in done:
            work_task.result()
            return "done"
        return "timeout"
