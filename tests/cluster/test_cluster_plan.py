"""The cross-node plan (supervisor/cluster/cluster_plan.py) over an in-memory store: phases cut
by node from the reload planner's actions, written once by the leader, advanced in one
transaction per phase only when every node acknowledged, a stale leader fenced, and over seeded
random interleavings of acknowledgements, advances and leader changes: no phase is entered before
every node acknowledged the one before (so no new-map persister starts while an old one runs)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
from memory_store import MemoryStore

from synsup.supervisor.cluster.cluster_plan import (
    PREPARE,
    ClusterPlan,
    Planner,
    PlanState,
    cluster_phases,
    plan_status,
    restart_everywhere,
    still_stops,
)
from synsup.supervisor.cluster.membership import Keys
from synsup.supervisor.plans import Action

KEYS = Keys("/c/")
OLD = {"main": "a", "redis": "a", "persister1": "b", "persister2": "b", "generic1": "c", "sender1": "c"}
NEW = {**OLD, "persister2": "c"}  # persister2 moves from b to c
PERSISTER_CHANGE = [  # what units/reload_plan.py gives for a change of stream_writers.events
    Action("stop", ("persister1", "persister2"), "stream_writers.events changed"),
    Action("restart", ("main",), "stream_writers.events changed"),
    Action("start", ("persister1", "persister2"), "the new events writers"),
    Action("restart", ("generic1",), "stream_writers.events changed"),
    Action("restart", ("sender1",), "stream_writers.events changed"),
]


def run(body: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(body())


def test_a_persister_change_is_prepare_stop_old_everywhere_main_start_new_then_the_others() -> None:
    phases = cluster_phases(PERSISTER_CHANGE, OLD, NEW)
    assert [(p.name, {n: [(a.verb, a.units) for a in s] for n, s in p.steps.items()}) for p in phases] == [
        (PREPARE, {"a": [], "b": [], "c": []}),
        ("stop persister1, persister2: stream_writers.events changed",
         {"b": [("stop", ("persister1", "persister2"))]}),
        ("restart", {"a": [("restart", ("main",))]}),
        ("start persister1, persister2: the new events writers",
         {"b": [("start", ("persister1",))], "c": [("start", ("persister2",))]}),
        ("restart", {"c": [("restart", ("generic1",)), ("restart", ("sender1",))]}),
    ]
    assert [p.nodes for p in phases] == [["a", "b", "c"], ["b"], ["a"], ["b", "c"], ["c"]]


NEEDS = {"main": ("redis",), "persister1": ("main",), "persister2": ("main",),  # units/unit_specs.py's
         "generic1": ("main", "persister1", "persister2"), "sender1": ("main", "persister1", "persister2")}
ROLL = [Action("restart", (u,), "shared config changed") for u in
        ("redis", "main", "persister1", "persister2", "generic1", "sender1")]  # the planner's step order


def steps_of(phases: tuple[Any, ...]) -> list[tuple[str, dict[str, list[str]]]]:
    return [(p.name, {n: [u for a in s for u in a.units] for n, s in p.steps.items()}) for p in phases[1:]]


def test_restarts_across_nodes_keep_the_single_host_order_main_before_what_needs_it_on_other_nodes() -> None:
    """main on a, persisters on b, workers on c, a change that restarts them all: b restarts its
    persisters only once a acknowledged main ready again, c its workers once b acknowledged the
    persisters; a node's own chain (Redis then main on a) stays one phase, in order."""
    phases = cluster_phases(ROLL, OLD, OLD, NEEDS)
    assert steps_of(phases) == [("restart", {"a": ["redis", "main"]}),
                                ("restart", {"b": ["persister1", "persister2"]}),
                                ("restart", {"c": ["generic1", "sender1"]})]
    assert cluster_phases(ROLL, OLD, OLD) == phases, "without dependencies: each restart needs those before it"


def test_restarts_with_no_dependency_across_nodes_share_a_phase() -> None:
    """persister2 on c: both persisters need only main, so they restart together after it; the
    workers need both, so they come after; nothing on one node waits for its own node."""
    phases = cluster_phases(ROLL, NEW, NEW, NEEDS)
    assert steps_of(phases) == [("restart", {"a": ["redis", "main"]}),
                                ("restart", {"b": ["persister1"], "c": ["persister2"]}),
                                ("restart", {"c": ["generic1", "sender1"]})]
    on_one = {u: "a" for u in NEW}
    assert steps_of(cluster_phases(ROLL, on_one, on_one, NEEDS)) == [
        ("restart", {"a": ["redis", "main", "persister1", "persister2", "generic1", "sender1"]})], "one host: one phase"
    only_workers = [a for a in ROLL if a.units[0] in ("generic1", "sender1")]
    assert steps_of(cluster_phases(only_workers, NEW, NEW, NEEDS)) == [
        ("restart", {"c": ["generic1", "sender1"]})], "what they need is not restarted: nothing to wait for"


def test_still_stops_is_what_the_plan_in_progress_stops_on_a_node_from_its_unacknowledged_phase_on() -> None:
    plan = ClusterPlan(cluster_phases(PERSISTER_CHANGE, OLD, NEW), "digest")
    assert still_stops(plan, "b", acknowledged=False) == {"persister1", "persister2"}
    assert still_stops(plan.next(), "b", acknowledged=False) == {"persister1", "persister2"}, "its stop phase"
    assert still_stops(plan.next(), "b", acknowledged=True) == set(), "b stopped them and said so"
    assert still_stops(plan, "c", acknowledged=False) == set(), "c stops nothing"
    assert still_stops(replace(plan, state=PlanState.ABORTED), "b", acknowledged=False) == set()


def test_a_plan_reads_back_as_written() -> None:
    plan = ClusterPlan(cluster_phases(PERSISTER_CHANGE, OLD, NEW), "digest")
    assert ClusterPlan.decode(plan.next().encode()) == plan.next()


async def leading(store: MemoryStore, node: str) -> Any:
    lease = await store.grant(30)
    assert await store.create(KEYS.leader, node.encode(), lease.id)
    return lease, await store.get(KEYS.leader)


def test_the_plan_is_written_once_and_waits_for_every_acknowledgement() -> None:
    async def body() -> None:
        store = MemoryStore()
        planner = Planner(store, KEYS)
        _, leader = await leading(store, "a")
        plan = ClusterPlan(cluster_phases(PERSISTER_CHANGE, OLD, NEW), "digest")
        assert await planner.propose(plan, leader)
        assert not await planner.propose(ClusterPlan(plan.phases, "other"), leader), "one plan at a time"
        await planner.acknowledge(plan, "a")
        await planner.acknowledge(plan, "c")
        waiting = await planner.advance(leader)
        assert (waiting.advanced, waiting.waiting_for, waiting.reason) == (False, ("b",),
                                                                         "phase prepare: waiting for b")
        await planner.acknowledge(plan, "b")
        moved = await planner.advance(leader)
        assert moved.advanced and moved.plan is not None and moved.plan.phase == 1
        assert (await planner.read())[0] == moved.plan
        again = await planner.advance(leader)
        assert not again.advanced and again.waiting_for == ("b",), "the acks of one phase do not count for the next"
    run(body)


def test_a_stale_leader_cannot_advance_nor_propose() -> None:
    async def body() -> None:
        store = MemoryStore()
        planner = Planner(store, KEYS)
        lease, old_leader = await leading(store, "a")
        plan = ClusterPlan(cluster_phases(PERSISTER_CHANGE, OLD, NEW), "digest")
        assert await planner.propose(plan, old_leader)
        for node in "abc":
            await planner.acknowledge(plan, node)
        store.expire(lease.id)  # a's lease ended (partitioned); b takes the lead
        _, new_leader = await leading(store, "b")
        fenced = await planner.advance(old_leader)
        assert not fenced.advanced and fenced.reason.startswith("the plan or the leader changed")
        assert (await planner.read())[0] == plan
        assert (await planner.advance(new_leader)).advanced, "the new leader goes on at the recorded phase"
    run(body)


def test_abort_only_stops_going_forward() -> None:
    async def body() -> None:
        store = MemoryStore()
        planner = Planner(store, KEYS)
        _, leader = await leading(store, "a")
        plan = ClusterPlan(cluster_phases(PERSISTER_CHANGE, OLD, NEW), "digest")
        await planner.propose(plan, leader)
        assert await planner.abort("admin")
        now, _ = await planner.read()
        assert now is not None and now.state is PlanState.ABORTED and now.phase == 0
        assert not (await planner.advance(leader)).advanced
        assert await planner.propose(ClusterPlan(plan.phases, "digest"), leader), "a finished plan makes room"
    run(body)


def test_status_names_the_phase_the_nodes_it_waits_for_and_a_down_one() -> None:
    plan = ClusterPlan(cluster_phases(PERSISTER_CHANGE, OLD, NEW), "digest").next().next().next()
    assert plan_status(plan, {"b"}, up={"a", "b"}) == {"id": plan.id, "phase": plan.current.name, "waiting_for": ["c"],
                                                        "reason": "node c is down", "blocked": True}
    assert plan_status(plan, set(), up={"a", "b", "c"})["blocked"] is False  # type: ignore[index]
    assert plan_status(None, set(), set()) is None


def test_status_says_why_an_up_node_did_not_acknowledge_and_calls_the_plan_blocked() -> None:
    plan = ClusterPlan(cluster_phases(PERSISTER_CHANGE, OLD, NEW), "digest").next().next().next()
    status = plan_status(plan, set(), up={"a", "b", "c"}, notes={"c": "persister2 did not become ready: exit 1",
                                                                  "a": "not waited for"})
    assert status is not None
    assert (status["reason"], status["blocked"]) == ("node c: persister2 did not become ready: exit 1", True)


@pytest.mark.parametrize("seed", range(40))
def test_no_phase_begins_before_every_node_acknowledged_the_one_before(seed: int) -> None:
    """Random interleavings: nodes acknowledge whenever they like (only the phase they see), two
    daemons try to advance (one of them the stale leader after a switch), the store goes down and
    comes back. Checked after every step: the phases went 0, 1, 2... and each move happened only
    when every node of the phase left had acknowledged it."""
    rng = random.Random(seed)

    async def body() -> None:
        store = MemoryStore()
        planner = Planner(store, KEYS)
        lease, leader = await leading(store, "a")
        stale = None
        plan = ClusterPlan(cluster_phases(PERSISTER_CHANGE, OLD, NEW), "digest")
        assert await planner.propose(plan, leader)
        acked: dict[int, set[str]] = {}
        entered = [0]
        for _ in range(400):
            store.down = rng.random() < 0.1
            try:
                now, _ = await planner.read()
                assert now is not None
                if now.state is not PlanState.RUNNING:
                    break
                move = rng.random()
                if move < 0.5:
                    node = rng.choice(now.current.nodes)
                    await planner.acknowledge(now, node)
                    acked.setdefault(now.phase, set()).add(node)
                elif move < 0.9:
                    outcome = await planner.advance(rng.choice([leader, stale or leader]))
                    if outcome.advanced:
                        assert acked.get(now.phase, set()) >= set(now.current.nodes)
                        entered.append(outcome.plan.phase if outcome.plan.state is PlanState.RUNNING else -1)
                elif stale is None:
                    store.expire(lease.id)
                    stale, (lease, leader) = leader, await leading(store, "b")
            except Exception as e:  # only the store being down may interrupt a step
                assert store.down and "down" in str(e), e
        assert entered == [*range(len(plan.phases)), -1], "every phase in order, then done"
    run(body)


def test_status_cluster_shows_the_plan_blocked_on_a_down_node() -> None:
    from synsup.supervisor.cluster.cluster_status import read_cluster_status
    from synsup.supervisor.cluster_config import ClusterConfig, Node, StoreConfig
    config = ClusterConfig("cluster.yaml", "c", StoreConfig(("http://10.0.0.9:2379",), KEYS.prefix),
                           {n: Node(n, f"10.0.0.{i}") for i, n in enumerate("abc", 1)}, {})

    async def body() -> tuple[dict[str, Any], dict[str, Any]]:
        store = MemoryStore()
        planner = Planner(store, KEYS)
        _, leader = await leading(store, "a")
        for node in "ab":
            await store.put(KEYS.member(node), b"{}")
        plan = ClusterPlan(cluster_phases(PERSISTER_CHANGE, OLD, NEW), "digest")
        await planner.propose(plan, leader)
        await planner.acknowledge(plan, "a")
        blocked = await read_cluster_status(config, store)
        await planner.acknowledge(plan, "b")
        await planner.acknowledge(plan, "c")
        await planner.advance(leader)
        return blocked, await read_cluster_status(config, store)
    blocked, later = run(body)
    assert blocked["plan"] == {"id": blocked["plan"]["id"], "phase": "prepare", "waiting_for": ["b", "c"],
                               "reason": "node c is down", "blocked": True}
    assert later["plan"] == {"id": blocked["plan"]["id"], "waiting_for": ["b"], "reason": "", "blocked": False,
                             "phase": "stop persister1, persister2: stream_writers.events changed"}


def test_without_the_applied_files_anywhere_every_synapse_process_stops_everywhere_then_the_new_set_starts() -> None:
    placed = {**OLD, "pusher1": "c"}  # what the nodes last published; pusher1 is gone from the new files
    actions = restart_everywhere(placed, NEW, {u for u in NEW if u != "redis"})
    assert [(a.verb, a.units) for a in actions] == [
        ("stop", ("generic1", "main", "persister1", "persister2", "pusher1", "sender1")),
        ("start", ("generic1", "main", "persister1", "persister2", "sender1"))]
    phases = cluster_phases(actions, placed, NEW)
    assert [p.nodes for p in phases] == [["a", "b", "c"], ["a", "b", "c"], ["a", "b", "c"]]
    assert phases[1].steps["b"][0].units == ("persister1", "persister2"), "stopped where they ran"
    assert phases[2].steps["c"][0].units == ("generic1", "persister2", "sender1"), "started where they run now"
