"""The engine with real processes and short timings: timeouts, SIGKILL escalation, liveness."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import platform
import time

import psutil
import pytest
from helpers import Deployment

from synsup.supervisor.engine.process import return_free_heap
from synsup.supervisor.engine.restart_policy import RestartPolicy
from synsup.supervisor.engine.supervisor import Supervisor
from synsup.supervisor.engine.unit import Timing
from synsup.supervisor.engine.unit_state import UnitState
from synsup.units.loader import load_deployment
from synsup.units.unit_specs import unit_specs

pytestmark = pytest.mark.integration
S = UnitState


def specs_of(d: Deployment, **overrides):
    deployment = load_deployment([d.config], d.workers_dir, os.environ.get("PYTHON", "python3")).deployment
    specs = [s for s in unit_specs(deployment) if s.name in ("main", "generic1", "redis")]
    specs = [dataclasses.replace(s, dependencies=tuple(x for x in s.dependencies if x in ("main", "redis")))
             for s in specs]
    return [dataclasses.replace(s, **overrides.get(s.name, {})) for s in specs]


def run(d, specs, scenario, timing=None, policy=RestartPolicy):
    async def main():
        sup = Supervisor(specs, log_dir=d.state_dir, notify_dir=d.state_dir, timing=timing, policy=policy)
        async with asyncio.TaskGroup() as group:
            sup.spawn_tasks(group)
            try:
                sup.start_all()
                await asyncio.wait_for(scenario(sup), 60)
            finally:
                await sup.stop_all()
                sup.cancel_tasks()
        sup.close()
    asyncio.run(main())


def test_hung_start_times_out(fake_env):
    fake_env.behave("generic1", hang=True)
    specs = specs_of(fake_env, generic1={"start_timeout": 0.5})

    async def scenario(sup):
        unit = sup.units["generic1"]
        await sup.wait_until(lambda: unit.restarts >= 1)
        assert unit.last_exit.code == 0  # it honoured the SIGTERM
        assert unit.error.startswith("not ready within 0.5s")
    run(fake_env, specs, scenario)


def test_ignored_sigterm_gets_sigkill(fake_env):
    fake_env.behave("generic1", ignore_term=True)
    specs = specs_of(fake_env, generic1={"stop_timeout": 0.5})

    async def scenario(sup):
        unit = sup.units["generic1"]
        await sup.wait_until(sup.all_ready)
        pid = unit.pid
        began = time.monotonic()
        await unit.stop()
        assert 0.4 < time.monotonic() - began < 5
        assert unit.last_exit.signal == "SIGKILL" and not psutil.pid_exists(pid)
        assert unit.last_exit.describe() == "killed by synsup after 0.5s (did not stop on SIGTERM)"
    run(fake_env, specs, scenario)


def test_unhealthy_unit_is_restarted(fake_env):
    timing = Timing(liveness_interval=0.1, probe_timeout=1.0)

    async def scenario(sup):
        unit = sup.units["generic1"]
        await sup.wait_until(sup.all_ready)
        pid = unit.pid
        states = []
        sup.add_listener(lambda u: states.append(u.state) if u is unit else None)
        open(os.path.join(fake_env.control, "generic1.unhealthy"), "w").close()
        await sup.wait_until(lambda: S.UNHEALTHY in states)
        os.unlink(os.path.join(fake_env.control, "generic1.unhealthy"))
        await sup.wait_until(lambda: unit.state is S.READY and unit.pid != pid)
        assert "unhealthy: failing 3/3" in unit.error and "answered 'HTTP/1.1 500" in unit.error
        assert unit.restarts == 1
    run(fake_env, specs_of(fake_env), scenario, timing=timing)


def test_redis_needs_its_password(fake_env):
    fake_env.shared["redis"]["password"] = "s3cret"
    fake_env.write()

    async def scenario(sup):
        await sup.wait_until(sup.all_ready)
        from synsup.supervisor.engine.probes import check
        probe = sup.units["redis"].spec.probes[0]
        assert await check(probe, 2) is None
        assert "refused AUTH" in (await check(dataclasses.replace(probe, password="wrong"), 2) or "")
        assert "NOAUTH" in (await check(dataclasses.replace(probe, password=None), 2) or "")
    run(fake_env, specs_of(fake_env), scenario)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_the_free_heap_goes_back_to_the_kernel():
    """After a start or a reply for every unit, the freed peak leaves the daemon's RSS."""
    held = [bytearray(1000) for _ in range(20_000)]  # 20 MB in small blocks: the C heap, not mmap
    del held[:-1]  # the last one stays: the heap's top is held, only malloc_trim returns the rest
    before = psutil.Process().memory_info().rss
    assert return_free_heap() is True
    assert psutil.Process().memory_info().rss < before - 5 * 2**20
