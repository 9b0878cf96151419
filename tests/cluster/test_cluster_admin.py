"""The admin's words to the store (supervisor/cluster/cluster_admin.py) over the in-memory store:
abort stops a plan going forward, ack stands in for a node gone for good (never for one that is
up, never for another phase), remove-node forgets a down node."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from memory_store import MemoryStore

from synsup.supervisor.cluster import cluster_admin
from synsup.supervisor.cluster.cluster_plan import PREPARE, ClusterPlan, Planner, PlanPhase, PlanState
from synsup.supervisor.cluster.membership import Keys
from synsup.supervisor.errors import SynsupError
from synsup.supervisor.plans import Action

KEYS = Keys("/c/")
PHASES = (PlanPhase(PREPARE, {"a": (), "c": ()}),
          PlanPhase("restart", {"c": (Action("restart", ("generic1",), "new map"),)}))


def run(body: Any) -> Any:
    return asyncio.run(body())


async def with_plan() -> tuple[MemoryStore, Planner, ClusterPlan]:
    store = MemoryStore()
    lease = await store.grant(30)
    await store.create(KEYS.leader, b"a", lease.id)
    leader = await store.get(KEYS.leader)
    assert leader is not None
    await store.put(KEYS.member("a"), b"{}", lease.id)
    planner = Planner(store, KEYS)
    plan = ClusterPlan(PHASES, "new")
    assert await planner.propose(plan, leader)
    return store, planner, plan


def test_abort_ends_the_plan_and_a_second_abort_says_there_is_none() -> None:
    async def body() -> None:
        store, planner, plan = await with_plan()
        said = await cluster_admin.abort(store, KEYS)
        assert said.startswith(f"plan {plan.id} aborted at phase prepare")
        assert (await planner.read())[0].state is PlanState.ABORTED  # type: ignore[union-attr]
        with pytest.raises(SynsupError, match="no plan in progress"):
            await cluster_admin.abort(store, KEYS)
    run(body)


def test_ack_for_a_gone_node_is_its_acknowledgement_of_the_phase_in_progress() -> None:
    async def body() -> None:
        store, planner, plan = await with_plan()
        await cluster_admin.ack(store, KEYS, "c", "prepare")
        assert await store.get(planner.ack_key(plan, 0, "c")) is not None
        with pytest.raises(SynsupError, match=r"node a is up: its daemon acknowledges for itself"):
            await cluster_admin.ack(store, KEYS, "a", "0")
        with pytest.raises(SynsupError, match=r"the plan is at phase 0 \(prepare\), not 'restart'; pass --phase 0"):
            await cluster_admin.ack(store, KEYS, "c", "restart")
        with pytest.raises(SynsupError, match="does not wait for node b"):
            await cluster_admin.ack(store, KEYS, "b", "0")
    run(body)


def test_remove_node_forgets_a_down_node_and_refuses_an_up_one() -> None:
    async def body() -> None:
        store, _, _ = await with_plan()
        await store.put(KEYS.units + "c", b"{}")
        await store.put(KEYS.placed + "c", b"[]")
        assert "node c removed" in await cluster_admin.remove_node(store, KEYS, "c")
        assert await store.get_prefix(KEYS.placed) == []
        with pytest.raises(SynsupError, match="node a is up"):
            await cluster_admin.remove_node(store, KEYS, "a")
        with pytest.raises(SynsupError, match="knows no node zz"):
            await cluster_admin.remove_node(store, KEYS, "zz")
    run(body)
