"""synsup's own Prometheus metrics: a collector that reads the supervisor's units, the tallies
and the units' process trees when scraped, and nothing in between."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Sample

from ... import __version__
from ..engine.resources import ResourceSampler
from ..engine.tallies import ProbeTally, UnitTally, exit_reason
from ..engine.unit_state import UnitState
from ..protocol import ReloadResult
from .scrape_targets import instance_of

if TYPE_CHECKING:
    from ..engine.supervisor import Supervisor
    from ..engine.unit import Unit
    from ..source import Loaded

UNIT_LABELS = ["unit", "app", "group", "instance"]  # instance: as the unit's scrape target has it
RELOAD_RESULTS = tuple(r.value for r in ReloadResult if r is not ReloadResult.PLAN)  # a dry run is no reload
EXIT_REASONS = ("exit_code", "signal", "unhealthy", "start_timeout", "stopped")


class _Generation(Protocol):
    @property
    def generation(self) -> int: ...


class _Operation(Protocol):
    @property
    def name(self) -> str: ...


class _Operations(Protocol):
    @property
    def current(self) -> _Operation | None: ...


class DaemonView(Protocol):
    """What the collector reads of the daemon (read-only)."""

    @property
    def supervisor(self) -> Supervisor | None: ...

    @property
    def current(self) -> Loaded: ...

    @property
    def reloads(self) -> _Generation: ...

    @property
    def operations(self) -> _Operations: ...


@dataclass
class Tallies:
    """Event counts: per unit (fed by the supervisor's change listener) and of reloads."""

    units: dict[str, UnitTally] = field(default_factory=dict)
    reloads: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RELOAD_RESULTS, 0))
    last_reload: float = 0.0

    def unit_changed(self, unit: Unit) -> None:
        t = self.units.setdefault(unit.spec.name, UnitTally())
        if unit.restarts > t.seen_restarts:
            t.restarts_total += unit.restarts - t.seen_restarts
        t.seen_restarts = unit.restarts
        if unit.last_exit is not None and unit.last_exit is not t.seen_exit:
            t.seen_exit = unit.last_exit
            t.exits[exit_reason(unit.state, unit.last_exit, unit.error, unit.wanted)] += 1
        if unit.state is UnitState.READY and unit.pid is not None and unit.pid != t.seen_ready_pid:
            t.seen_ready_pid = unit.pid
            if unit.started_at is not None:
                t.start_seconds.observe(max(0.0, unit.clock.time() - unit.started_at))

    def reload_done(self, result: str, at: float) -> None:
        self.reloads[result] = self.reloads.get(result, 0) + 1
        if result != "rejected":
            self.last_reload = at


def unit_labels(unit: Unit) -> list[str]:
    return [unit.spec.name, unit.spec.app, unit.spec.group or "", instance_of(unit.spec)]


def info_series(info: dict[str, str], units: list[Unit]) -> list[dict[str, str]]:
    """The label sets of synsup_info: one, or one per version when the units of an
    application run different versions (during an upgrade, or after a partial one), with the
    units running it."""
    extra = {k: v for k, v in info.items() if k.isidentifier()}
    by_version: dict[tuple[str, str], list[str]] = {}
    for unit in units:
        if unit.spec.version and unit.spec.code_name:
            by_version.setdefault((unit.spec.code_name, unit.spec.version), []).append(unit.spec.name)
    apps = [code for code, _ in by_version]
    if all(apps.count(code) == 1 for code in apps):
        return [{"version": __version__, **extra}]
    return [{"version": __version__, **extra, f"{code.lower()}_version": version, "units": ",".join(names)}
            for (code, version), names in sorted(by_version.items()) if apps.count(code) > 1]


class _Families:
    def __init__(self, daemon: DaemonView, tallies: Tallies, sampler: ResourceSampler) -> None:
        self.daemon, self.tallies, self.sampler = daemon, tallies, sampler

    def units(self) -> list[Unit]:
        sup = self.daemon.supervisor
        return list(sup.units.values()) if sup is not None else []


class UnitEventFamilies(_Families):
    """What changes only when a unit does (state, restarts, exits, start times): rendered again
    only after the supervisor reported a change."""

    def collect(self) -> Iterator[Metric]:
        units = self.units()
        yield from self._states(units)
        yield from self._events(units)

    def _states(self, units: list[Unit]) -> Iterator[Metric]:
        state = GaugeMetricFamily("synsup_unit_state", "1 for the unit's current state, 0 for the others",
                                  labels=[*UNIT_LABELS, "state"])
        ready = GaugeMetricFamily("synsup_unit_ready", "1 if the unit is ready", labels=UNIT_LABELS)
        for unit in units:
            labels = unit_labels(unit)
            for s in UnitState:
                state.add_metric([*labels, s.value], 1.0 if unit.state is s else 0.0)
            ready.add_metric(labels, 1.0 if unit.state is UnitState.READY else 0.0)
        yield state
        yield ready

    def _events(self, units: list[Unit]) -> Iterator[Metric]:
        restarts = CounterMetricFamily("synsup_unit_restarts", "Restarts of the unit's process by synsup",
                                       labels=UNIT_LABELS)
        exits = CounterMetricFamily("synsup_unit_exits", "Exits of the unit's process, by reason",
                                    labels=[*UNIT_LABELS, "reason"])
        start = HistogramMetricFamily("synsup_unit_start_seconds", "Seconds from spawn to ready",
                                      labels=UNIT_LABELS)
        for unit in units:
            labels = unit_labels(unit)
            t = self.tallies.units.get(unit.spec.name) or UnitTally()
            restarts.add_metric(labels, t.restarts_total)
            for reason in EXIT_REASONS:
                exits.add_metric([*labels, reason], t.exits[reason])
            start.add_metric(labels, t.start_seconds.buckets(), t.start_seconds.total)
        yield from (restarts, exits, start)


class ScrapeTimeFamilies(_Families):
    """What changes all the time (probe times, resources, the daemon's figures): every scrape."""

    def collect(self) -> Iterator[Metric]:
        units = self.units()
        yield from self._probes(units)
        yield from self._resources(units)
        yield from self._daemon(self.daemon.supervisor)

    def _probes(self, units: list[Unit]) -> Iterator[Metric]:
        probe = HistogramMetricFamily("synsup_unit_probe_seconds", "Seconds a liveness check took",
                                      labels=UNIT_LABELS)
        failures = CounterMetricFamily("synsup_unit_probe_failures", "Failed liveness checks",
                                       labels=UNIT_LABELS)
        for unit in units:
            if unit.spec.probes:
                labels = unit_labels(unit)
                probes: ProbeTally = getattr(unit, "probe_tally", None) or ProbeTally()
                probe.add_metric(labels, probes.seconds.buckets(), probes.seconds.total)
                failures.add_metric(labels, probes.failures)
        yield from (probe, failures)

    def _resources(self, units: list[Unit]) -> Iterator[Metric]:
        rss = GaugeMetricFamily("synsup_unit_resident_memory_bytes", "Resident memory of the unit's process tree",
                                labels=UNIT_LABELS)
        cpu = CounterMetricFamily("synsup_unit_cpu_seconds", "CPU time (user + system) of the unit's process tree",
                                  labels=UNIT_LABELS)
        fds = GaugeMetricFamily("synsup_unit_open_fds", "Open file descriptors of the unit's process tree",
                                labels=UNIT_LABELS)
        for unit in units:
            usage = self.sampler.usage(unit.pid) if unit.pid else None
            if usage is not None:
                labels = unit_labels(unit)
                rss.add_metric(labels, usage.rss_bytes)
                cpu.add_metric(labels, usage.cpu_seconds)
                fds.add_metric(labels, usage.open_fds)
        self.sampler.prune()
        yield from (rss, cpu, fds)

    def _daemon(self, sup: Supervisor | None) -> Iterator[Metric]:
        reloads = CounterMetricFamily("synsup_reloads", "Reloads by result", labels=["result"])
        for result, count in self.tallies.reloads.items():
            reloads.add_metric([result], count)
        yield reloads
        yield GaugeMetricFamily("synsup_config_generation", "Generation of the configuration in use",
                                value=self.daemon.reloads.generation)
        yield GaugeMetricFamily("synsup_last_reload_timestamp_seconds",
                                "When the configuration was last loaded (start or reload)", value=self.tallies.last_reload)
        info = GaugeMetricFamily("synsup_info", "synsup's version and what it runs (per version when units differ)",
                                 labels=[])
        for labels in info_series(self.daemon.current.info, self.units()):
            info.samples.append(Sample("synsup_info", labels, 1))
        yield info
        operation = GaugeMetricFamily("synsup_operation", "What the daemon does now", labels=["name"])
        running = self.daemon.operations.current
        operation.add_metric([running.name if running is not None else "none"], 1)
        yield operation


class Exposition:
    """The text of /metrics: the unit-event families as rendered after the last unit change,
    then the scrape-time families rendered now. Both by prometheus_client's generate_latest."""

    def __init__(self, daemon: DaemonView, tallies: Tallies, sampler: ResourceSampler) -> None:
        self.daemon = daemon
        self._events = _registry(UnitEventFamilies(daemon, tallies, sampler))
        self._now = _registry(ScrapeTimeFamilies(daemon, tallies, sampler))
        self._cached: tuple[object, bytes] | None = None

    def changed(self, *_: object) -> None:
        """A unit changed (a Supervisor listener): render its event families again."""
        self._cached = None

    def render(self) -> bytes:
        sup = self.daemon.supervisor
        key = (id(sup), tuple(sup.units) if sup is not None else ())  # units added or removed
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, generate_latest(self._events))
        return self._cached[1] + generate_latest(self._now)


def _registry(collector: UnitEventFamilies | ScrapeTimeFamilies) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
