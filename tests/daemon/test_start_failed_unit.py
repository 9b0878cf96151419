"""Red team: `synsup start UNIT` on a unit that is `failed` (in its cool-down) did nothing and
exited 1, leaving it failed for up to 300 s; only `restart UNIT` retried."""

from __future__ import annotations

import asyncio

from fakes import run_supervisor, until

from synsup.supervisor.engine.unit import Timing
from synsup.supervisor.engine.unit_state import UnitState
from synsup.supervisor.spec import UnitSpec

S = UnitState


def test_start_of_a_failed_unit_tries_again_at_once(tmp_path):
    async def scenario(sup, clock, spawner):
        unit = sup.units["a"]
        sup.start_all()
        for _ in range(5):
            (await spawner.next_child()).exit(1)
        await until(lambda: unit.state is S.FAILED and unit.retry_at is not None)
        starting = asyncio.ensure_future(sup.start_units(["a"]))
        await spawner.next_child()  # a new attempt now, not after the cool-down
        await until(lambda: unit.state is S.READY)
        await starting
        await sup.stop_all()

    timing = Timing(liveness_interval=None, notify_grace=0.0, failed_retry=300.0)
    spec = UnitSpec(name="a", argv=("fake", "a"), notify=False)

    async def with_stuck_cooldown(sup, clock, spawner):
        real_sleep = clock.sleep

        async def sleep(seconds):  # the cool-down never ends by itself in this test
            if seconds >= 300:
                await asyncio.Event().wait()
            await real_sleep(seconds)
        clock.sleep = sleep
        await scenario(sup, clock, spawner)
    run_supervisor(with_stuck_cooldown, [spec], tmp_path, timing)
