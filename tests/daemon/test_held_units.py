"""A unit held by the admin (`synsup stop UNIT`) is no failed dependency: its dependents start,
and a reload plan does not halt on them (issue 20)."""

from __future__ import annotations


def test_a_reload_restarting_a_dependent_of_a_held_unit_is_not_partial(tmp_path):
    """Issue 20: with persister1 held, every reload that restarted a worker ended `partial`."""
    import asyncio

    from fakes import run_supervisor, until

    from synsup.supervisor.daemon.plan_executor import apply_actions
    from synsup.supervisor.engine.unit import Timing
    from synsup.supervisor.plans import Action
    from synsup.supervisor.spec import UnitSpec

    specs = [UnitSpec(name="main", argv=("fake",), notify=False),
             UnitSpec(name="p1", argv=("fake",), dependencies=("main",), step=1, notify=False),
             UnitSpec(name="w", argv=("fake", "new"), dependencies=("main", "p1"), step=2, notify=False)]

    async def scenario(sup, clock, spawner):
        sup.start_all()
        await until(lambda: sup.all_ready())
        await sup.hold(["p1"])
        await asyncio.wait_for(apply_actions(sup, [Action("restart", ("w",), "worker file changed")], specs,
                                             {}), 5)
        assert sup.units["w"].state.value == "ready" and sup.units["w"].spec.argv == ("fake", "new")
        await sup.stop_all()
    run_supervisor(scenario, specs, tmp_path, Timing(liveness_interval=None, notify_grace=0.0))
