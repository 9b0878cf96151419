"""TimerGroups: callbacks due at about the same time share one loop timer; each runs once, in
the order added, never before its time nor more than GRAIN after it; a cancelled one never
runs, even when another of its group cancels it; each loop has its own groups."""

from __future__ import annotations

import asyncio

from synsup.supervisor.engine.timer_groups import GRAIN, timer_groups


def test_callbacks_of_one_group_share_a_timer_run_in_order_on_time_and_cancelled_ones_never():
    async def main():
        loop = asyncio.get_running_loop()
        groups = timer_groups()
        ran: list[tuple[str, float]] = []
        began = loop.time()
        timers_before = len(loop._scheduled)
        ticks: dict[str, int] = {}
        groups.at(began + 0.05, "canceller", lambda: groups.cancel(ticks["d"], "d"))  # runs first
        ticks.update({name: groups.at(began + 0.05, name, lambda n=name: ran.append((n, loop.time())))
                      for name in ("a", "b", "c", "d")})
        groups.cancel(ticks["b"], "b")
        assert len(loop._scheduled) - timers_before == 1, "one timer for the group"
        later = groups.at(began + 0.2, "later", lambda: ran.append(("later", loop.time())))
        assert later != ticks["a"]
        async with asyncio.timeout(5):
            while len(ran) < 3:
                await asyncio.sleep(0.01)
        assert [name for name, _ in ran] == ["a", "c", "later"]
        assert all(began + 0.05 <= at <= began + 0.05 + GRAIN + 0.05 for _, at in ran[:2]), ran
        assert ran[2][1] >= began + 0.2
        assert groups.pending() == 0
    asyncio.run(main())


def test_a_failing_callback_stops_none_of_the_others_and_each_loop_has_its_own_groups():
    seen = []

    async def main():
        loop = asyncio.get_running_loop()
        errors = []
        loop.set_exception_handler(lambda _, context: errors.append(context["exception"]))
        groups = timer_groups()
        seen.append(groups)
        ran = []
        groups.at(loop.time() + 0.01, "bad", lambda: 1 / 0)
        groups.at(loop.time() + 0.01, "good", lambda: ran.append(1))
        async with asyncio.timeout(5):
            while not ran:
                await asyncio.sleep(0.005)
        assert isinstance(errors[0], ZeroDivisionError)
    asyncio.run(main())
    asyncio.run(main())
    assert seen[0] is not seen[1]
