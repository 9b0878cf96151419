"""ClusterNode's own rules (supervisor/daemon/cluster_node.py), without processes: which units a
daemon that comes back mid-plan leaves to the plan, and the wait for a stopped unit's ports."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from memory_store import MemoryStore

from synsup.supervisor.cluster.cluster_plan import PREPARE, ClusterPlan, Planner, PlanPhase
from synsup.supervisor.cluster.membership import MemberRecord, Membership
from synsup.supervisor.cluster.published_states import UnitStates
from synsup.supervisor.cluster_config import ClusterConfig, Node, StoreConfig
from synsup.supervisor.daemon.cluster_node import ClusterNode
from synsup.supervisor.daemon.cluster_steps import FullView, ports_closed
from synsup.supervisor.plans import Action
from synsup.supervisor.source import Loaded
from synsup.supervisor.spec import UnitSpec

CONFIG = ClusterConfig("cluster.yaml", "c", StoreConfig(("http://10.0.0.9:2379",), "/c/"),
                       {n: Node(n, f"10.0.0.{i}") for i, n in enumerate("ab", 1)}, {})
PHASES = (PlanPhase(PREPARE, {"a": (), "b": ()}),
          PlanPhase("stop", {"b": (Action("stop", ("persister1",), "old map"),)}),
          PlanPhase("restart", {"a": (Action("restart", ("main",), "new map"),)}),
          PlanPhase("start", {"b": (Action("start", ("persister1", "persister3"), "new map"),)}))


def node_b(store: MemoryStore) -> ClusterNode:
    record = MemberRecord("b", "10.0.0.2", "1", "new", 0.0)
    states = UnitStates(Membership(CONFIG, "b", record, store))  # type: ignore[arg-type]
    view = FullView(Loaded([]), {})
    return ClusterNode(states, view, lambda: view, lambda old, new: [])


def run(body: Any) -> Any:
    return asyncio.run(body())


def test_a_daemon_back_mid_plan_leaves_to_the_plan_what_its_remaining_steps_act_on() -> None:
    async def body() -> tuple[set[str], set[str]]:
        store = MemoryStore()
        node = node_b(store)
        plan = ClusterPlan(PHASES, "new", phase=1)
        before_ack = await node._acted_on_later(plan)
        await Planner(store, node.keys).acknowledge(plan, "b")
        return before_ack, await node._acted_on_later(plan)
    before_ack, after_ack = run(body)
    assert before_ack == {"persister1", "persister3"}, "its stop step not acknowledged yet: done again"
    assert after_ack == {"persister1", "persister3"}, "the start step is still to come"

    async def at_start() -> set[str]:
        store = MemoryStore()
        node = node_b(store)
        plan = ClusterPlan(PHASES, "new", phase=3)
        await Planner(store, node.keys).acknowledge(plan, "b")
        return await node._acted_on_later(plan)
    assert run(at_start) == set(), "every step of b done: nothing is left to the plan"


def test_a_daemon_back_mid_plan_also_holds_the_stand_ins_of_units_other_nodes_start_later() -> None:
    """Its start waits for every unit it does not hold and its steps queue behind that start: a
    stand-in for a persister another node starts in a later phase would keep it from ever
    acknowledging the phase in progress (the prepare deadlock, tests/cluster/test_rejoin_mid_plan.py)."""
    phases = (*PHASES[:3], PlanPhase("start", {"a": (Action("start", ("persister4",), "new map"),),
                                               "b": (Action("start", ("persister1", "persister3"), "new map"),)}))

    async def at(phase: int) -> set[str]:
        return await node_b(MemoryStore())._acted_on_later(ClusterPlan(phases, "new", phase=phase))
    assert run(lambda: at(0)) == {"persister1", "persister3", "persister4"}
    assert run(lambda: at(3)) == {"persister1", "persister3", "persister4"}, "started in the phase in progress"
    assert "main" not in run(lambda: at(1)), "a unit another node restarts: its stand-in is followed as it is"


def test_ports_closed_waits_for_a_stopped_units_port_and_gives_up_after_its_deadline() -> None:
    listening = socket.create_server(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    spec = UnitSpec("persister1", ("x",), listens=(f"127.0.0.1:{port}",))

    async def closed_later() -> None:
        asyncio.get_running_loop().call_later(0.3, listening.close)
        await ports_closed([spec], timeout=10)
    run(closed_later)
    still = socket.create_server(("127.0.0.1", port))
    try:
        with pytest.raises(TimeoutError):
            run(lambda: ports_closed([spec], timeout=0.3))
    finally:
        still.close()
