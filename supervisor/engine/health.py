"""A unit's readiness and liveness: its probes, READY=1 on its notify socket, and for a
process without any probe, whether it is stopped (SIGSTOP), learnt from SIGCHLD (child_stops). A part of Unit,
kept apart so that the state machine reads on its own."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..spec import UnitSpec
from .child_stops import CHILD_STOPS
from .clock import Clock
from .flag import Flag
from .passing_checks import PassingChecks
from .peer_checks import PeerChecks
from .probes import Prober
from .unit_tally import ProbeTally


@dataclass
class Timing:
    """Probe and readiness timings; the defaults are the documented behaviour."""

    liveness_interval: float | None = 10.0  # None: no liveness probes
    probe_timeout: float = 2.0
    failure_threshold: int = 3
    notify_grace: float = 5.0  # how long to wait for READY=1 from a unit not known to send it
    failed_retry: float | None = 300.0  # a failed unit is tried again after this cool-down
    peer_interval: float | None = 30.0  # peer checks (`UnitSpec.peer_checks`) once ready, then this often
    peer_timeout: float = 5.0
    liveness_slack: float = 0.25  # a liveness check waits up to this much longer, to wake with others


class HealthChecks:
    """Mixed into Unit: the attributes below are the Unit's."""

    # The fields of a Unit, all its parts' (HealthChecks, unit_process.ProcessRun,
    # unit_elsewhere.Elsewhere, Unit): one layout, no per-unit __dict__ (about 1.5 KB each, 500 units)
    __slots__ = ("health", "_sends_ready", "_peers", "_probe_tally", "spec", "clock", "spawner", "output",
                 "policy", "timing", "_on_change", "_notify_socket", "state", "since", "last_start_seconds",
                 "child", "started_at", "restarts", "failed_attempts", "retry_at", "last_exit", "_error",
                 "last_error", "last_error_at", "refused", "retry_soon", "dependencies", "ready_event",
                 "wanted", "before_stop", "start_gate", "start_cores", "_held", "waiting_for_resume", "_adopted",
                 "unpaused", "_stop", "_start_requested", "_idle", "_notify_ready", "_notify", "_prober", "_oom", "_stopped",
                 "installed", "_reported", "_report_changed", "log", "_exit_unsaid", "_prespawned", "_ready_at",
                 "_ended_run", "_prespawned_spec")

    spec: UnitSpec
    clock: Clock
    timing: Timing
    health: str | None
    unpaused: Flag
    _on_change: Callable[[Any], None]
    _prober: Prober
    _notify_ready: Flag
    _stopped: Flag
    _sends_ready: bool | None
    _peers: PeerChecks | None  # made when first asked for: most units have no peer checks
    _probe_tally: ProbeTally | None  # made at the first liveness check

    @property
    def pid(self) -> int | None:
        raise NotImplementedError

    @property
    def error(self) -> str | None:
        raise NotImplementedError

    @error.setter
    def error(self, error: str | None) -> None:
        raise NotImplementedError

    async def _readiness(self) -> None:
        if self.spec.probes:
            await self._until_healthy()
        if self.spec.ready_notify:
            await self._notify_ready.wait()  # it does send READY=1: up to the start timeout
            return
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
            if await self._pause_unless_ready_sent(delay):
                delay = 0.02  # READY=1 came: probed at once, then soon again
                continue
            delay = min(delay * 2, 0.5)
        self.health = "ok"

    async def _pause_unless_ready_sent(self, delay: float) -> bool:
        """The pause between two probes, cut short by READY=1 (True) from a process that sends it:
        Synapse sends it once its listeners are bound, so they are probed at once, not up to
        half a second later. A process that does not send it is probed as before."""
        if self._notify_ready.is_set() or not (self.spec.ready_notify or self._sends_ready):
            await self.clock.sleep(delay)
            return False
        ready, pause = self._notify_ready.waiter(), asyncio.ensure_future(self.clock.sleep(delay))
        try:
            await asyncio.wait((ready, pause), return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            pause.cancel()
        return self._notify_ready.is_set()

    def _watch_stops(self, pid: int) -> None:
        """Learn from SIGCHLD when the new process stops or continues. Called right after the
        spawn, before the loop runs again: a stop before this is still waiting in waitid."""
        self._stopped.clear()
        if not self.spec.probes:
            CHILD_STOPS.watch(pid, lambda stopped: self._stopped.set() if stopped else self._stopped.clear())

    async def _check_alive(self) -> str | None:
        """One liveness check: the probes, or for a unit without any, that it is not stopped."""
        if self.spec.probes:
            return await self._prober.settled_check(self.timing.probe_timeout)
        return "stopped (SIGSTOP)" if self._stopped.is_set() else None

    @property
    def peers(self) -> PeerChecks:
        if self._peers is None:
            self._peers = PeerChecks(self.clock, self.timing.peer_interval or 0.0, self.timing.peer_timeout,
                                     lambda: self._on_change(self))
        return self._peers

    @property
    def probe_tally(self) -> ProbeTally:
        """Liveness check times and failures, for metrics."""
        if self._probe_tally is None:
            self._probe_tally = ProbeTally()
        return self._probe_tally

    @property
    def degraded(self) -> str | None:
        """Why the unit's peers cannot reach it as configured, while it is ready; else None."""
        return self._peers.degraded if self._peers is not None else None

    def _stops_only(self) -> bool:
        """No probes and no peer checks: only a stop (SIGSTOP, learnt from SIGCHLD) starts its checks."""
        return not self.spec.probes and self.spec.argv is not None and self.timing.liveness_interval is not None \
            and not (self.spec.peer_checks and self.timing.peer_interval is not None)

    async def _liveness(self) -> None:
        """Returns once the unit failed its checks `failure_threshold` times in a row; its peer
        checks run meanwhile (and the unit is no longer degraded once it is not ready)."""
        peers = None
        if self.spec.peer_checks and self.timing.peer_interval is not None:
            peers = asyncio.ensure_future(self.peers.run(self.spec.peer_checks, self.pid))
        try:
            await self._probed_liveness()
        finally:
            if peers is not None:
                peers.cancel()
            if self._peers is not None:
                self._peers.degraded = None

    def _coalesced(self, seconds: float) -> float:
        """`seconds`, lengthened to end on a multiple of the liveness slack: the checks of hundreds
        of units wake together, a few per turn of the event loop, not one turn (and one epoll
        wait) each."""
        slack = self.timing.liveness_slack
        return seconds + (-(self.clock.monotonic() + seconds)) % slack if slack > 0 else seconds

    async def _probed_liveness(self) -> None:
        interval = self.timing.liveness_interval
        if interval is None or (not self.spec.probes and self.spec.argv is None):
            await asyncio.Event().wait()
            return
        failures = 0
        while failures < self.timing.failure_threshold:
            if not self.spec.probes and not failures:
                await self._stopped.wait()  # no timer while it runs: SIGCHLD says when it stops
            if not failures and self.spec.probes and type(self.clock) is Clock:  # (a test's clock: its sleeps)
                checks = PassingChecks(self._prober, self.timing.probe_timeout,
                                       lambda: self._coalesced(interval), self._passed)
                why = await checks.verdict or await self._check_alive()  # None: one for this task
            else:
                await self.clock.sleep(self._coalesced(interval))
                why = await self._check_alive()
            self.probe_tally.observe(self._prober.last_seconds, why is not None)
            if why and not self.unpaused.is_set():
                self.health = f"paused: {why}"  # no restarts while paused, so no counting
                continue
            failures = failures + 1 if why else 0
            self.health = f"failing {failures}/{self.timing.failure_threshold}: {why}" if why else "ok"
        self.error = f"unhealthy: {self.health}"

    def _passed(self, seconds: float) -> None:
        """A check that passed, run on callbacks (PassingChecks): what the loop above does for one."""
        self.probe_tally.observe(seconds, False)
        self.health = "ok"

