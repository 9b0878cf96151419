"""synsup's own Prometheus metrics: a collector that reads the supervisor's units, the tallies
and the units' process trees when scraped, and nothing in between."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from ... import version as synsup_version
from ..engine.resources import ResourceSampler
from ..engine.unit_state import UnitState
from ..engine.unit_tally import Histogram, ProbeTally, UnitTally
from .scrape_targets import instance_of
from .tallies import Tallies

if TYPE_CHECKING:  # prometheus_client is imported only with --metrics (Exposition): a few MB of RSS
    from prometheus_client.core import Metric

    from ..engine.supervisor import Supervisor
    from ..engine.unit import Unit
    from ..source import Loaded

UNIT_LABELS = ["unit", "app", "group", "instance"]  # instance: as the unit's scrape target, to join its own series
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


# -- Prometheus text lines for the per-unit families, written directly: prometheus_client's
# generate_latest checks and escapes every sample again at every scrape (about 15 us a sample,
# 5,500 samples for 500 units). Labels come out sorted, as generate_latest writes them, so a
# scraper sees the same text.

def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def label_text(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in sorted(labels.items())) + "}"


def number(value: float) -> str:
    value = float(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return "NaN" if math.isnan(value) else repr(value)


def header(name: str, help_text: str, kind: str) -> str:
    return f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n"


UNIT_EVENT_FAMILIES = (
    ("synsup_unit_state", "1 for the unit's current state, 0 for the others", "gauge"),
    ("synsup_unit_ready", "1 if the unit is ready", "gauge"),
    ("synsup_unit_degraded", "1 if the unit is ready but its peers cannot reach it as configured", "gauge"),
    ("synsup_unit_restarts_total", "Restarts of the unit's process by synsup", "counter"),
    ("synsup_unit_exits_total", "Exits of the unit's process, by reason", "counter"),
    ("synsup_unit_start_seconds", "Seconds from spawn to ready", "histogram"),
)
PROBE_FAMILIES = (
    ("synsup_unit_probe_seconds", "Seconds a liveness check took", "histogram"),
    ("synsup_unit_probe_failures_total", "Failed liveness checks", "counter"),
)
RESOURCE_FAMILIES = (
    ("synsup_unit_resident_memory_bytes", "Resident memory of the unit's process tree", "gauge"),
    ("synsup_unit_cpu_seconds_total", "CPU time (user + system) of the unit's process tree", "counter"),
    ("synsup_unit_open_fds", "Open file descriptors of the unit's process tree", "gauge"),
)


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
        return [{"version": synsup_version(), **extra}]
    return [{"version": synsup_version(), **extra, f"{code.lower()}_version": version, "units": ",".join(names)}
            for (code, version), names in sorted(by_version.items()) if apps.count(code) > 1]


class UnitLabels:
    """Each unit's label text, made once per unit and extra label."""

    def __init__(self) -> None:
        self._texts: dict[tuple, str] = {}
        self._heads: dict[tuple, tuple[list[str], str, str]] = {}

    def of(self, unit: Unit, **extra: str) -> str:
        spec = unit.spec
        key = (spec.name, spec.app, spec.group, *extra.items())
        text = self._texts.get(key)
        if text is None:
            text = self._texts[key] = label_text(
                {"unit": spec.name, "app": spec.app, "group": spec.group or "", "instance": instance_of(spec), **extra})
        return text

    def histogram_heads(self, unit: Unit, name: str, bounds: tuple[float, ...]) -> tuple[list[str], str, str]:
        """The heads of a histogram's bucket lines (one per bound and +Inf), _count and _sum."""
        key = (unit.spec.name, name, bounds)
        heads = self._heads.get(key)
        if heads is None:
            heads = self._heads[key] = (
                [f"{name}_bucket{self.of(unit, le=le)} " for le in (*map(repr, bounds), "+Inf")],
                f"{name}_count{self.of(unit)} ", f"{name}_sum{self.of(unit)} ")
        return heads

    def forget(self) -> None:
        self._texts.clear()
        self._heads.clear()


def _histogram(name: str, labels: UnitLabels, unit: Unit, histogram: Histogram) -> str:
    """A histogram's lines: each line's head (name and labels) made once per unit, then only
    the cumulative counts (ints: never inf or NaN) and the sum at each scrape."""
    buckets, count_head, sum_head = labels.histogram_heads(unit, name, histogram.bounds)
    lines, running = [], 0
    for head, count in zip(buckets, histogram.counts):
        running += count
        lines.append(f"{head}{float(running)!r}\n")
    return "".join(lines) + f"{count_head}{float(running)!r}\n{sum_head}{number(histogram.total)}\n"


def _families(families: tuple[tuple[str, str, str], ...], per_unit: list[tuple[str, ...]]) -> str:
    """Each family's header, then its lines of every unit, in unit order."""
    return "".join(header(*family) + "".join(lines[i] for lines in per_unit) for i, family in enumerate(families))


class UnitEventFamilies:
    """What changes only when a unit does (state, restarts, exits, start times): a unit's lines
    are made again only after the supervisor reported a change of that unit."""

    def __init__(self, tallies: Tallies, labels: UnitLabels) -> None:
        self.tallies, self.labels = tallies, labels
        self._lines: dict[str, tuple[int, tuple[str, ...]]] = {}  # name -> (id of the Unit, its lines)

    def changed(self, unit: Unit | None = None) -> None:
        if unit is None:
            self._lines.clear()
        else:
            self._lines.pop(unit.spec.name, None)

    def render(self, units: list[Unit]) -> str:
        per_unit = []
        for unit in units:
            kept = self._lines.get(unit.spec.name)
            if kept is None or kept[0] != id(unit):
                kept = self._lines[unit.spec.name] = (id(unit), self._unit_lines(unit))
            per_unit.append(kept[1])
        return _families(UNIT_EVENT_FAMILIES, per_unit)

    def _unit_lines(self, unit: Unit) -> tuple[str, ...]:
        of, t = self.labels.of, self.tallies.units.get(unit.spec.name) or UnitTally()
        states = "".join(f"synsup_unit_state{of(unit, state=s.value)} {1.0 if unit.state is s else 0.0}\n"
                         for s in UnitState)
        ready = f"synsup_unit_ready{of(unit)} {1.0 if unit.state is UnitState.READY else 0.0}\n"
        degraded = f"synsup_unit_degraded{of(unit)} {1.0 if unit.degraded else 0.0}\n"
        restarts = f"synsup_unit_restarts_total{of(unit)} {number(t.restarts_total)}\n"
        exits = "".join(f"synsup_unit_exits_total{of(unit, reason=r)} {number(t.exits[r])}\n" for r in EXIT_REASONS)
        start = _histogram("synsup_unit_start_seconds", self.labels, unit, t.start_seconds)
        return states, ready, degraded, restarts, exits, start


class ScrapeTimeFamilies:
    """What changes all the time (probe times, resources): made at every scrape."""

    def __init__(self, sampler: ResourceSampler, labels: UnitLabels) -> None:
        self.sampler, self.labels = sampler, labels

    def render(self, units: list[Unit]) -> str:
        probed = [self._probe_lines(u) for u in units if u.spec.probes]
        resources = [lines for u in units if (lines := self._resource_lines(u)) is not None]
        self.sampler.prune()
        return _families(PROBE_FAMILIES, probed) + _families(RESOURCE_FAMILIES, resources)

    def _probe_lines(self, unit: Unit) -> tuple[str, ...]:
        probes: ProbeTally = getattr(unit, "probe_tally", None) or ProbeTally()
        seconds = _histogram("synsup_unit_probe_seconds", self.labels, unit, probes.seconds)
        return seconds, f"synsup_unit_probe_failures_total{self.labels.of(unit)} {number(probes.failures)}\n"

    def _resource_lines(self, unit: Unit) -> tuple[str, ...] | None:
        usage = self.sampler.usage(unit.pid) if unit.pid else None
        if usage is None:
            return None
        labels = self.labels.of(unit)
        return (f"synsup_unit_resident_memory_bytes{labels} {number(usage.rss_bytes)}\n",
                f"synsup_unit_cpu_seconds_total{labels} {number(usage.cpu_seconds)}\n",
                f"synsup_unit_open_fds{labels} {number(usage.open_fds)}\n")


class DaemonFamilies:
    """The daemon's own figures (a few samples): through prometheus_client."""

    def __init__(self, daemon: DaemonView, tallies: Tallies) -> None:
        self.daemon, self.tallies = daemon, tallies

    def collect(self) -> Iterator[Metric]:
        yield from self._daemon(self.daemon.supervisor)

    def _daemon(self, sup: Supervisor | None) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        from prometheus_client.samples import Sample
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
        units = list(sup.units.values()) if sup is not None else []
        for labels in info_series(self.daemon.current.info, units):
            info.samples.append(Sample("synsup_info", labels, 1))
        yield info
        operation = GaugeMetricFamily("synsup_operation", "What the daemon does now", labels=["name"])
        running = self.daemon.operations.current
        operation.add_metric([running.name if running is not None else "none"], 1)
        yield operation


class Exposition:
    """The text of /metrics: the unit-event families (each unit's lines kept until it changes),
    the scrape-time families, then the daemon's own (prometheus_client's generate_latest)."""

    def __init__(self, daemon: DaemonView, tallies: Tallies, sampler: ResourceSampler) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
        self.content_type = CONTENT_TYPE_LATEST
        self.daemon = daemon
        self.labels = UnitLabels()
        self._events = UnitEventFamilies(tallies, self.labels)
        self._now = ScrapeTimeFamilies(sampler, self.labels)
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(DaemonFamilies(daemon, tallies))
        self._units_key: object = None

    def changed(self, unit: Unit | None = None) -> None:
        """A unit changed (a Supervisor listener): make its event lines again."""
        self._events.changed(unit)

    def render(self) -> bytes:
        sup = self.daemon.supervisor
        units = list(sup.units.values()) if sup is not None else []
        key = (id(sup), tuple(sup.units) if sup is not None else ())  # units added or removed
        if key != self._units_key:
            self._units_key = key
            self.labels.forget()
            self._events.changed()
        from prometheus_client import generate_latest
        text = self._events.render(units) + self._now.render(units)
        return text.encode() + generate_latest(self._registry)
