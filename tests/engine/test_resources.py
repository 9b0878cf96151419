"""The resource sampler's cache (engine/resources.py) is bounded by the live units: it was
trimmed only by a /metrics scrape, so with --metrics off every restart seen by `status` (or
`synsup top`) left about 1.1 kB behind."""

from __future__ import annotations

from types import SimpleNamespace

from fakes import FakeClock, run_supervisor, until

from synsup.supervisor.daemon.telemetry import Telemetry
from synsup.supervisor.engine.health import Timing
from synsup.supervisor.engine.restart_policy import RestartPolicy
from synsup.supervisor.engine.unit_state import UnitState
from synsup.supervisor.spec import UnitSpec


def sampler_entries(telemetry: Telemetry) -> int:
    sampler = telemetry.sampler
    return len(sampler._cpu) + len(sampler._started) + len(sampler._seen)


def test_a_thousand_restarts_seen_by_status_leave_the_sampler_cache_bounded(tmp_path):
    sizes = []

    async def scenario(sup, clock, spawner):
        telemetry = Telemetry()  # --metrics off
        await telemetry.start(SimpleNamespace(supervisor=sup))
        unit = sup.units["u"]
        unit.policy = RestartPolicy(stable_after=0.0)
        sup.start_all()
        for _ in range(1000):
            child = await spawner.next_child()  # a new pid each time
            await until(lambda: unit.state is UnitState.READY)
            clock.advance(100)
            telemetry.usage([unit])  # `synsup status` / `top`
            sizes.append(sampler_entries(telemetry))
            child.exit(1)
        telemetry.close()
    run_supervisor(scenario, [UnitSpec(name="u", argv=("x",), notify=False)], tmp_path,
                   Timing(notify_grace=0.0, liveness_interval=None), FakeClock())
    assert max(sizes) <= 3, sizes[-5:]
