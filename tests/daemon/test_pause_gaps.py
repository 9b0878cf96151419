"""Red team: `synsup pause` must mean no automatic restarts, also for a unit that was already
backing off or cooling down when the pause came; and a unit waiting for `resume` is settled,
so a command that waits for it (`restart UNIT` while paused) returns."""

from __future__ import annotations

import asyncio

from fakes import FakeClock, run_supervisor, until

from synsup.supervisor.engine.unit import Timing
from synsup.supervisor.engine.unit_state import UnitState
from synsup.supervisor.spec import UnitSpec

S = UnitState


class GatedClock(FakeClock):
    """Sleeps last until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await self.gate.wait()
        self.gate.clear()
        self.now += seconds


def run(scenario, tmp_path, timing: Timing) -> None:
    run_supervisor(scenario, [UnitSpec(name="a", argv=("fake", "a"), notify=False)], tmp_path, timing, GatedClock())


def test_a_unit_backing_off_when_paused_is_not_restarted_until_resume(tmp_path):
    async def scenario(sup, clock, spawner):
        unit = sup.units["a"]
        sup.start_all()
        (await spawner.next_child()).exit(1)  # never ready: backoff
        await until(lambda: unit.state is S.BACKOFF and clock.sleeps)
        sup.unpaused.clear()  # synsup pause, during the backoff
        clock.gate.set()  # the backoff ends
        await until(lambda: unit.waiting_for_resume)
        assert len(spawner.children) == 1 and unit.state is S.EXITED and unit.settled  # shown `exited (paused)`
        sup.unpaused.set()  # synsup resume
        await spawner.next_child()
        await sup.stop_all()
    run(scenario, tmp_path, Timing(liveness_interval=None, notify_grace=0.0))


def test_a_failed_unit_is_not_retried_after_its_cool_down_while_paused(tmp_path):
    async def scenario(sup, clock, spawner):
        unit = sup.units["a"]
        sup.start_all()
        for _ in range(5):
            (await spawner.next_child()).exit(1)
            await until(lambda: unit.state in (S.BACKOFF, S.FAILED) and len(clock.sleeps) == len(spawner.children))
            if unit.state is S.BACKOFF:
                clock.gate.set()
        assert unit.state is S.FAILED and unit.retry_at is not None
        sup.unpaused.clear()
        clock.gate.set()  # the cool-down ends while paused
        await until(lambda: unit.waiting_for_resume)
        assert len(spawner.children) == 5 and unit.state is S.FAILED and unit.settled
        await sup.stop_all()
        assert unit.state is S.STOPPED
    run(scenario, tmp_path, Timing(liveness_interval=None, notify_grace=0.0, failed_retry=300.0))


def test_restart_of_a_unit_that_exits_while_paused_returns(tmp_path):
    """Regression: `synsup restart UNIT` while paused waited forever (and blocked the queue)
    when the unit exited: backoff-while-paused never counted as settled."""
    async def scenario(sup, clock, spawner):
        unit = sup.units["a"]
        sup.start_all()
        await spawner.next_child()
        await until(lambda: unit.state is S.READY)
        sup.unpaused.clear()
        restart = asyncio.ensure_future(sup.restart(["a"]))
        (await spawner.next_child()).exit(1)
        async with asyncio.timeout(5):
            await restart
        assert unit.state is S.EXITED and unit.error == "exited with code 1"  # shown `exited (paused)`
        await sup.stop_all()
    run(scenario, tmp_path, Timing(liveness_interval=None, notify_grace=0.0))
