"""UnitSpec.start_beside: a unit starts beside a dependency (once its process is spawned) only
when the source's check says so at that start; a check that says no, fails to run or hangs
keeps the order (after the dependency is ready). Fake Synapse processes; the check is a tiny
command standing for units/synapse_programs/schema_current.py (a migration pending or not)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys

import pytest
from helpers import Deployment

from synsup.supervisor.engine.supervisor import Supervisor
from synsup.supervisor.spec import StartBeside
from synsup.units.loader import load_deployment
from synsup.units.unit_specs import unit_specs

pytestmark = pytest.mark.integration
MAIN_READY_AFTER = 1.5  # seconds main's fake takes from spawn to READY=1


@pytest.fixture
def fake_env(fake_env):
    fake_env.behave("main", ready_delay=MAIN_READY_AFTER)
    return fake_env


def check(exit_code: int, said: str) -> tuple[str, ...]:
    return (sys.executable, "-c", f"import sys; sys.stdin.read(); print({said!r}); sys.exit({exit_code})")


def specs_with(d: Deployment, argv: tuple[str, ...], timeout: float = 30.0):
    deployment = load_deployment([d.config], d.workers_dir, sys.executable).deployment
    specs = [s for s in unit_specs(deployment) if s.name in ("main", "generic1", "redis")]
    beside = StartBeside(units=("main",), check=argv, input=b"{}", timeout=timeout)
    return [dataclasses.replace(s, dependencies=("main",), start_beside=beside) if s.name == "generic1" else
            dataclasses.replace(s, dependencies=tuple(x for x in s.dependencies if x == "redis")) for s in specs]


def start(d: Deployment, specs) -> dict:
    """Start all; what main was when generic1's process was spawned, and whether all became ready."""
    seen: dict = {}

    async def main():
        sup = Supervisor(specs, log_dir=d.state_dir, notify_dir=d.state_dir)

        def changed(unit):
            if unit.spec.name == "generic1" and unit.child is not None and "main" not in seen:
                seen["main"] = sup.units["main"].state.value
        sup.add_listener(changed)
        async with asyncio.TaskGroup() as group:
            sup.spawn_tasks(group)
            try:
                sup.start_all()
                await asyncio.wait_for(sup.wait_until(sup.all_ready), 60)
                seen["all_ready"] = True
                seen["restarts"] = sup.units["generic1"].restarts
            finally:
                await sup.stop_all()
                sup.cancel_tasks()
        sup.close()
    asyncio.run(main())
    return seen


def test_a_pending_migration_keeps_main_first(fake_env):
    seen = start(fake_env, specs_with(fake_env, check(1, "3 delta file(s) of schema 94 not applied yet")))
    assert seen == {"main": "ready", "all_ready": True, "restarts": 0}


def test_a_check_that_cannot_run_or_hangs_keeps_main_first(fake_env):
    seen = start(fake_env, specs_with(fake_env, ("/nonexistent/python", "x")))
    assert seen["main"] == "ready"
    hang = (sys.executable, "-c", "import time; time.sleep(60)")
    seen = start(fake_env, specs_with(fake_env, hang, timeout=0.5))
    assert seen["main"] == "ready" and seen["all_ready"]


def test_no_migration_lets_a_worker_start_beside_main(fake_env):
    seen = start(fake_env, specs_with(fake_env, check(0, "every delta applied: no migration")))
    assert seen == {"main": "starting", "all_ready": True, "restarts": 0}  # spawned while main was not ready


def test_a_check_run_by_other_code_than_main_runs_keeps_main_first(fake_env):
    """A partial upgrade moved main to the new release's interpreter: a 'no migration' verdict of the
    old code's check says nothing of what main's new code migrates at its start."""
    new_code = os.path.join(fake_env.root, "new-python")
    os.symlink(sys.executable, new_code)
    specs = [dataclasses.replace(s, argv=(new_code, *s.argv[1:])) if s.name == "main" else s
             for s in specs_with(fake_env, check(0, "every delta applied: no migration"))]
    seen = start(fake_env, specs)
    assert seen == {"main": "ready", "all_ready": True, "restarts": 0}
