"""Counts of events that leave no trace in a unit's state: exits by reason, start and probe
times. Kept as plain numbers, read by the metrics collector at scrape time."""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field

from .process import ExitStatus
from .unit_state import UnitState

# Few buckets: every one is a series per unit, rendered at every scrape of hundreds of units.
START_BUCKETS = (1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0)  # most starts: 1-10 s
PROBE_BUCKETS = (0.001, 0.01, 0.1, 1.0)  # a loopback /health answers well under 1 ms


@dataclass
class Histogram:
    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)  # per bucket, not cumulative; last one is +Inf
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value


class ProbeTally:
    """Liveness checks of one unit: how long each took, how many failed."""

    def __init__(self) -> None:
        self.seconds = Histogram(PROBE_BUCKETS)
        self.failures = 0

    def observe(self, seconds: float, failed: bool) -> None:
        self.seconds.observe(seconds)
        self.failures += failed


def exit_reason(state: UnitState, status: ExitStatus, error: str | None, wanted: bool) -> str:
    """Why a process ended: stopped (asked to), unhealthy, start_timeout, signal or exit_code."""
    if not wanted or state in (UnitState.STOPPING, UnitState.STOPPED):
        return "stopped"
    if state is UnitState.UNHEALTHY:
        return "unhealthy"
    if error and error.startswith("not ready within"):
        return "start_timeout"
    return "signal" if status.signal else "exit_code"


@dataclass
class UnitTally:
    restarts_total: int = 0
    exits: Counter[str] = field(default_factory=Counter)
    start_seconds: Histogram = field(default_factory=lambda: Histogram(START_BUCKETS))
    seen_restarts: int = 0
    seen_exit: ExitStatus | None = None
    seen_ready_pid: int | None = None
