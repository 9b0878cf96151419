"""What the daemon reports about itself: metrics and scrape targets at `--metrics`, resource
columns for `status`, failure failure_hooks. One object the daemon starts, feeds and closes."""

from __future__ import annotations

import argparse
import os
import time
from typing import TYPE_CHECKING, Any

from ..engine.resources import ResourceSampler
from ..engine.unit_state import UnitState
from . import failure_hooks
from .failure_hooks import FailureHooks
from .metrics import RELOAD_RESULTS, Exposition, Tallies
from .metrics_server import METRICS_CONTENT_TYPE, MetricsAddress, MetricsServer
from .scrape_targets import targets_json

if TYPE_CHECKING:
    from ..engine.unit import Unit
    from .metrics import DaemonView

ON_FAILURE_ENV = "SYNSUP_ON_FAILURE"


def reload_result(record: dict[str, Any]) -> str:
    """applied, rejected or partial, from a reload's record (or reply)."""
    if record.get("result") in RELOAD_RESULTS:
        return str(record["result"])
    return "applied" if record.get("applied") is True else "rejected"


class Telemetry:
    def __init__(self, metrics: MetricsAddress | None = None, on_failure: list[str] | None = None) -> None:
        self.metrics = metrics
        self.tallies = Tallies()
        self.sampler = ResourceSampler()
        self.hooks = FailureHooks(on_failure or [])
        self.server: MetricsServer | None = None
        self.daemon: DaemonView | None = None
        self._states: dict[str, UnitState] = {}

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
        failure_hooks.activate(self.hooks)
        if self.metrics is not None:
            exposition = Exposition(daemon, self.tallies, self.sampler)
            if daemon.supervisor is not None:
                daemon.supervisor.add_listener(exposition.changed)
            self.server = MetricsServer(self.metrics, {
                "/metrics": lambda: (exposition.render(), METRICS_CONTENT_TYPE),
                "/targets": lambda: (targets_json(daemon.current.specs).encode(), "application/json"),
            })
            await self.server.start()

    def unit_changed(self, unit: Unit) -> None:
        self.tallies.unit_changed(unit)
        before = self._states.get(unit.spec.name)
        self._states[unit.spec.name] = unit.state
        if unit.state is UnitState.FAILED and before is not UnitState.FAILED:
            self.hooks.fire("failed", unit.spec.name, unit.error)

    def reload_done(self, reply: dict[str, Any]) -> None:
        """A reload's reply, as the reload loop returns it: counted, and hooked if not applied."""
        result = reload_result(reply)
        self.tallies.reload_done(result, time.time())
        if result != "applied":
            errors = reply.get("errors") or []
            self.hooks.fire(f"reload_{result}", None, "; ".join(map(str, errors))[:4000])

    def annotate(self, units: list[dict[str, Any]], by_name: dict[str, Unit]) -> None:
        """Add rss_bytes and cpu_percent (None without a process) to `status` unit entries."""
        for entry in units:
            unit = by_name.get(entry["name"])
            usage = self.sampler.usage(unit.pid) if unit is not None and unit.pid else None
            entry["rss_bytes"] = usage.rss_bytes if usage else None
            entry["cpu_percent"] = round(self.sampler.cpu_percent(unit.pid, usage), 1) \
                if usage and unit is not None and unit.pid else None
        self.sampler.prune()  # else only a scrape would forget the pids of restarted units

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        self.hooks.close()
        failure_hooks.activate(None)
