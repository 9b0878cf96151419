"""UnitSpec.cpu_bound_start: starts that compute for seconds (Synapse importing its code) take
turns for the cores, one per core at once; a start that stops computing gives its turn away;
other units never wait for a turn; a stop while waiting leaves no turn behind. Fake Synapse
processes that compute (`busy`) before they bind and send READY=1, on a supervisor told it has
one core."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import time

import pytest
from helpers import Deployment

from synsup.supervisor.engine.start_cores import BUSY_SHARE, _cgroup_quota, cpu_wanted_ns
from synsup.supervisor.engine.supervisor import Supervisor
from synsup.supervisor.engine.unit_state import UnitState
from synsup.units.loader import load_deployment
from synsup.units.unit_specs import unit_specs

pytestmark = pytest.mark.integration
NAMES = ("main", "generic1", "persister1")


def specs(d: Deployment, not_cpu_bound: tuple[str, ...] = ()):
    """main, generic1 and persister1 with no dependencies: only the turns order their starts."""
    deployment = load_deployment([d.config], d.workers_dir, sys.executable).deployment
    return [dataclasses.replace(s, dependencies=(), start_beside=None, cpu_bound_start=s.name not in not_cpu_bound)
            for s in unit_specs(deployment) if s.name in NAMES]


def events(d: Deployment, kind: str) -> dict[str, float]:
    with open(os.path.join(d.control, "events.jsonl")) as f:
        return {e["name"]: e["t"] for e in map(json.loads, f) if e["event"] == kind}


def run(d: Deployment, unit_specs_, work, cores: int = 1) -> dict:
    """Run `work(sup, seen)` on a supervisor of `cores` cores; `seen`: each unit's health lines."""
    seen: dict = {"health": {}}

    async def main():
        sup = Supervisor(unit_specs_, log_dir=d.state_dir, notify_dir=d.state_dir, cores=cores)
        sup.add_listener(lambda u: u.health and seen["health"].setdefault(u.spec.name, set()).add(u.health))
        async with asyncio.TaskGroup() as group:
            sup.spawn_tasks(group)
            try:
                await asyncio.wait_for(work(sup, seen), 60)
            finally:
                await sup.stop_all()
                sup.cancel_tasks()
        seen["nothing_left"] = sup.start_cores.idle()  # no turn, no waiter, no timer left behind
        sup.close()
    asyncio.run(main())
    return seen


def waited_for_a_core(seen: dict, name: str) -> bool:
    return any(h.startswith("waiting for a core") for h in seen["health"].get(name, ()))


async def while_generic1_computes(sup, seen, name: str) -> None:
    """generic1 started (holding the only core), then `name` asks for one."""
    generic1 = sup.units["generic1"]
    generic1.start()
    await sup.wait_until(lambda: generic1.pid is not None)
    sup.units[name].start()


async def all_ready(sup, seen):
    sup.start_all()
    await sup.wait_until(sup.all_ready)


def test_starts_that_compute_take_turns_one_per_core(fake_env):
    for name in NAMES:
        fake_env.behave(name, busy=0.4)
    seen = run(fake_env, specs(fake_env), all_ready)
    started, computed = events(fake_env, "start"), events(fake_env, "computed")
    order = sorted(NAMES, key=started.get)
    for before, after in zip(order, order[1:]):  # on one core, each computed alone
        assert started[after] >= computed[before], (order, started, computed)
    waited = [n for n in NAMES if waited_for_a_core(seen, n)]
    assert sorted(waited) == sorted(order[1:]), seen["health"]  # status said why they waited
    assert seen["nothing_left"]


def test_on_two_cores_two_compute_at_once(fake_env):
    for name in NAMES:
        fake_env.behave(name, busy=0.6)
    run(fake_env, specs(fake_env), all_ready, cores=2)
    started, computed = events(fake_env, "start"), events(fake_env, "computed")
    first, second, third = sorted(NAMES, key=started.get)
    assert started[second] < computed[first]  # the second core was used at once
    assert started[third] >= min(computed[first], computed[second])


def test_a_start_that_waits_without_computing_gives_its_turn_away(fake_env):
    """generic1 hangs before binding (as a worker waiting for its database): main, asking for the
    only core after it, starts at the next look, not at generic1's start timeout (120 s)."""
    fake_env.behave("generic1", hang=True)
    fake_env.behave("main", busy=0.2)

    async def work(sup, seen):
        generic1, main = sup.units["generic1"], sup.units["main"]
        generic1.start()
        await sup.wait_until(lambda: generic1.state is UnitState.STARTING and generic1.pid is not None)
        main.start()
        await sup.wait_until(lambda: main.state is UnitState.READY)
        seen["generic1"] = generic1.state

    seen = run(fake_env, specs(fake_env), work)
    assert seen["generic1"] is UnitState.STARTING  # still not ready: main did not wait for it
    assert waited_for_a_core(seen, "main")


def test_a_unit_without_cpu_bound_start_never_waits_for_a_turn(fake_env):
    fake_env.behave("generic1", busy=3.0)

    async def work(sup, seen):
        await while_generic1_computes(sup, seen, "main")
        await sup.wait_until(lambda: sup.units["main"].state is UnitState.READY)
        seen["generic1"] = sup.units["generic1"].state

    seen = run(fake_env, specs(fake_env, not_cpu_bound=("main",)), work)
    assert seen["generic1"] is UnitState.STARTING  # still computing when main was ready
    assert not waited_for_a_core(seen, "main")


def test_a_stop_while_waiting_for_a_turn_leaves_no_turn_behind(fake_env):
    fake_env.behave("generic1", busy=1.0)

    async def work(sup, seen):
        generic1, main, persister1 = (sup.units[n] for n in ("generic1", "main", "persister1"))
        await while_generic1_computes(sup, seen, "main")
        await sup.wait_until(lambda: waited_for_a_core(seen, "main"))
        await main.stop()  # while it waits for its turn
        await sup.wait_until(lambda: generic1.state is UnitState.READY)
        persister1.start()
        await sup.wait_until(lambda: persister1.state is UnitState.READY)
        seen["main"] = main.state

    seen = run(fake_env, specs(fake_env), work)
    assert seen["main"] is UnitState.STOPPED
    assert "main" not in events(fake_env, "start")  # never spawned
    assert not waited_for_a_core(seen, "persister1")  # its turn came at once: nothing left of main's wait
    assert seen["nothing_left"]


def test_a_start_that_shares_its_core_still_counts_as_computing():
    """Three processes computing on one CPU each get a third of it, and each wants all of it: the
    CPU a start wanted (ran or waited to run) keeps its turn when other work crowds its core."""
    code = "import os, time\nos.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\nwhile True: pass\n"
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(3)]
    try:
        before, began = [cpu_wanted_ns(p.pid) for p in procs], time.monotonic()
        time.sleep(0.5)
        shares = [(cpu_wanted_ns(p.pid) - b) / 1e9 / (time.monotonic() - began) for p, b in zip(procs, before)]
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert all(share > BUSY_SHARE for share in shares), shares
    assert cpu_wanted_ns(procs[0].pid) is None  # reaped: gone


def test_a_lone_restart_does_not_wait_for_a_start_that_waits_without_computing(fake_env):
    """generic1 hangs in starting (holding the only turn, idle); main crashes: its restart takes
    a turn at once (generic1 judged idle on the spot), and says nothing of waiting for a core."""
    fake_env.behave("generic1", hang=True)

    async def work(sup, seen):
        generic1, main = sup.units["generic1"], sup.units["main"]
        main.start()
        await sup.wait_until(lambda: main.state is UnitState.READY)
        generic1.start()
        await sup.wait_until(lambda: generic1.state is UnitState.STARTING and generic1.pid is not None)
        seen["health"].clear()
        first = main.pid
        os.kill(first, 9)
        await sup.wait_until(lambda: main.state is UnitState.READY and main.pid != first)

    seen = run(fake_env, specs(fake_env), work)
    assert not waited_for_a_core(seen, "main"), seen["health"]
    assert seen["nothing_left"]


def test_a_restart_of_main_goes_before_workers_waiting_for_a_core(fake_env):
    fake_env.behave("generic1", busy=1.0)

    async def work(sup, seen):
        main, persister1 = sup.units["main"], sup.units["persister1"]
        await while_generic1_computes(sup, seen, "persister1")  # a stream writer: a later step than main's
        await sup.wait_until(lambda: waited_for_a_core(seen, "persister1"))
        main.start()
        await sup.wait_until(lambda: main.state is persister1.state is UnitState.READY)

    run(fake_env, specs(fake_env), work)
    started = events(fake_env, "start")
    assert started["generic1"] < started["main"] < started["persister1"], started


def test_a_unit_task_cancelled_while_holding_or_waiting_leaves_nothing_behind(fake_env):
    fake_env.behave("generic1", busy=3.0)

    async def work(sup, seen):
        await while_generic1_computes(sup, seen, "main")
        await sup.wait_until(lambda: waited_for_a_core(seen, "main"))
        sup.cancel_tasks()  # as a daemon whose stop timed out
        await asyncio.sleep(0.05)
        seen["left_after_cancel"] = sup.start_cores.idle()

    seen = run(fake_env, specs(fake_env), work)
    assert seen["left_after_cancel"]


@pytest.mark.parametrize("cpu_max, cores", [("max 100000", None), ("150000 100000", 1.5), ("200000 100000", 2.0)])
def test_a_cgroup_cpu_quota_counts_as_fewer_cores(tmp_path, cpu_max, cores):
    """Docker's --cpus=1.5 or systemd's CPUQuota=150% on a bigger machine: two turns, not one a core."""
    (tmp_path / "cgroup").write_text("0::/system.slice/synsup.service\n")
    (tmp_path / "fs/system.slice/synsup.service").mkdir(parents=True)
    (tmp_path / "fs/system.slice/synsup.service/cpu.max").write_text(cpu_max + "\n")
    assert _cgroup_quota(str(tmp_path / "cgroup"), str(tmp_path / "fs")) == cores
