"""What the daemon reports about itself: metrics and scrape targets at `--metrics`, resource
columns for `status`, failure hooks. One object the daemon starts, feeds and closes."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..engine.resources import ResourceSampler
from ..engine.unit_state import UnitState
from ..protocol import ReloadOutcome, ReloadResult
from .failure_hooks import FailureHooks
from .metrics import Exposition
from .metrics_server import MetricsAddress, MetricsServer
from .scrape_targets import targets_json
from .tallies import Tallies

if TYPE_CHECKING:
    from ..engine.unit import Unit
    from .metrics import DaemonView

ON_FAILURE_ENV = "SYNSUP_ON_FAILURE"
CRASH_LOOP_STARTS = 3  # failed starts in a row that make a unit crash-looping (5 make it failed)


class Telemetry:
    def __init__(self, metrics: MetricsAddress | None = None, on_failure: list[str] | None = None) -> None:
        self.metrics = metrics
        self.tallies = Tallies()
        self.sampler = ResourceSampler()
        self.hooks = FailureHooks(on_failure or [])
        self.server: MetricsServer | None = None
        self.daemon: DaemonView | None = None
        self._states: dict[str, UnitState] = {}
        self._troubled: set[str] = set()  # crash-looping or failed, not ready since

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Telemetry:
        """From --metrics and --on-failure (else $SYNSUP_ON_FAILURE); MetricsAddressError if bad."""
        address = getattr(args, "metrics", None)
        commands = list(getattr(args, "on_failure", None) or [])
        if not commands and os.environ.get(ON_FAILURE_ENV):
            commands = [os.environ[ON_FAILURE_ENV]]
        return cls(MetricsAddress.parse(address) if address else None, commands)

    async def start(self, daemon: DaemonView) -> None:
        self.daemon = daemon
        self.tallies.last_reload = time.time()
        if daemon.supervisor is not None:
            daemon.supervisor.add_listener(self.unit_changed)
        if self.metrics is not None:
            exposition = Exposition(daemon, self.tallies, self.sampler)
            if daemon.supervisor is not None:
                daemon.supervisor.add_listener(exposition.changed)
            self.server = MetricsServer(self.metrics, {
                "/metrics": lambda: (exposition.render(), exposition.content_type),
                "/targets": lambda: (targets_json(daemon.current.specs).encode(), "application/json"),
            })
            await self.server.start()

    def unit_changed(self, unit: Unit) -> None:
        self.tallies.unit_changed(unit)
        name, before = unit.spec.name, self._states.get(unit.spec.name)
        self._states[name] = unit.state
        if unit.state is before:
            return
        event = self._hook_event(unit)
        if event == "recovered":
            self._troubled.discard(name)
        elif event is not None:
            self._troubled.add(name)
        if event is not None:
            self.hooks.fire(event, name, unit.error)

    def _hook_event(self, unit: Unit) -> str | None:
        """failed; crash-looping (a backoff after CRASH_LOOP_STARTS failed starts in a row);
        recovered (ready again after either)."""
        if unit.state is UnitState.FAILED:
            return "failed"
        if unit.state is UnitState.BACKOFF and unit.policy.failed_starts >= CRASH_LOOP_STARTS \
                and unit.spec.name not in self._troubled:
            return "crash-looping"  # once per loop
        if unit.state is UnitState.READY and unit.spec.name in self._troubled:
            return "recovered"
        return None

    def reload_done(self, outcome: ReloadOutcome) -> None:
        """A reload's outcome: counted, and hooked if not applied."""
        result = outcome.result.value
        self.tallies.reload_done(result, time.time())
        if outcome.result is not ReloadResult.APPLIED:
            errors = outcome.errors or ([outcome.error] if outcome.error else [])
            self.hooks.fire(f"reload_{result}", None, "; ".join(errors)[:4000])

    def usage(self, units: Iterable[Unit]) -> dict[str, dict[str, Any]]:
        """rss_bytes and cpu_percent (None without a process) of each unit, for `status`."""
        out = {}
        for unit in units:
            usage = self.sampler.usage(unit.pid) if unit.pid else None
            out[unit.spec.name] = {"rss_bytes": usage.rss_bytes if usage else None,
                                   "cpu_percent": round(self.sampler.cpu_percent(unit.pid, usage), 1)
                                   if usage and unit.pid else None}
        self.sampler.prune()  # else only a scrape would forget the pids of restarted units
        return out

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        self.hooks.close()
        self.sampler.close()
