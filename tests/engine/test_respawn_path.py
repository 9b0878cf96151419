"""What a crash restart does between the exit and the new fork stays O(1) in the number of
units: a unit that went down makes the daemon degraded without a look at every unit (py-spy
of crash -> new child with 500 units: Daemon.settle scanned all of them on every change)."""

from __future__ import annotations

from types import SimpleNamespace

from synsup.supervisor.daemon.daemon import Daemon
from synsup.supervisor.engine.unit_state import UnitState
from synsup.supervisor.source import Loaded
from synsup.supervisor.statedir import StateDir


class EveryUnitLookedAt(Exception):
    pass


def refuse_scans():
    raise EveryUnitLookedAt


def test_a_unit_going_down_settles_degraded_without_scanning_the_others(tmp_path):
    daemon = Daemon(Loaded([]), StateDir(str(tmp_path / "s")), str(tmp_path / "logs"))
    daemon.supervisor = SimpleNamespace(all_ready=refuse_scans)  # type: ignore[assignment]
    down = SimpleNamespace(state=UnitState.BACKOFF, held=False)
    daemon.settle(down)  # type: ignore[arg-type]
    assert daemon.lifecycle.phase.value == "degraded"
