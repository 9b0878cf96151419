"""What the daemon counts between scrapes: each unit's tallies (fed by the supervisor's change
listener) and reloads by result. Read by the /metrics collector (metrics.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..engine.unit_state import UnitState
from ..engine.unit_tally import UnitTally, exit_reason
from ..protocol import ReloadResult

if TYPE_CHECKING:
    from ..engine.unit import Unit

RELOAD_RESULTS = tuple(r.value for r in ReloadResult if r is not ReloadResult.PLAN)  # a dry run is no reload


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
