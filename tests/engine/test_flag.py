"""Flag, the unit's slim asyncio.Event: the same behaviour, and what a unit at rest holds
(tracemalloc of a 500-unit daemon: 7,000 empty asyncio.Event deques, 2.6 MB, and 5 tasks a unit)."""

from __future__ import annotations

import asyncio

from fakes import run_supervisor, until

from synsup.supervisor.engine.flag import Flag
from synsup.supervisor.engine.health import Timing
from synsup.supervisor.engine.unit_state import UnitState
from synsup.supervisor.spec import UnitSpec


def test_a_flag_wakes_every_waiter_and_forgets_waits_given_up():
    async def main():
        flag = Flag()
        waits = [asyncio.ensure_future(flag.wait()) for _ in range(3)]
        given_up = flag.waiter()
        await asyncio.sleep(0)
        given_up.cancel()
        flag.waiter().cancel()
        assert not any(w.done() for w in waits) and not flag.is_set()
        flag.set()
        assert await asyncio.gather(*waits) == [True, True, True]
        assert flag.waiter().done(), "set: a new wait is over at once"
        flag.clear()
        late = flag.waiter()
        assert not late.done() and flag._waiters == [late], "the cancelled waits are gone"
        late.cancel()
    asyncio.run(main())


def test_a_ready_unit_without_probes_holds_no_asyncio_event_and_one_task():
    """Its liveness waits on a bare future until its process is stopped: no task of its own."""
    async def scenario(sup, clock, spawner):
        unit = sup.units["a"]
        sup.start_all()
        await until(lambda: unit.state is UnitState.READY)
        for _ in range(3):
            await asyncio.sleep(0)
        assert not [name for name in type(unit).__slots__ if isinstance(getattr(unit, name, None), asyncio.Event)]
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert sorted(t.get_coro().__qualname__ for t in tasks) == ["Unit.supervise"]
        await sup.stop_all()
    spec = UnitSpec(name="a", argv=("fake", "a"), notify=False)
    run_supervisor(scenario, [spec], "/nonexistent", Timing(notify_grace=0.0))
