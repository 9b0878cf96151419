"""The leader's look (supervisor/cluster/change_leader.py) over an in-memory store: a change is
proposed only once every node that takes part reports the leader's config digest, a running plan
is advanced, a done one becomes the applied digest, an aborted change is not proposed again,
and a node that does not hold the leader key does nothing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from memory_store import MemoryStore

from synsup.supervisor.cluster.change_leader import ChangeLeader, behind, old_files
from synsup.supervisor.cluster.cluster_plan import PREPARE, Planner, PlanPhase, PlanState
from synsup.supervisor.cluster.membership import Keys
from synsup.supervisor.plans import Action

KEYS = Keys("/c/")
PHASES = (PlanPhase(PREPARE, {"a": (), "b": ()}),
          PlanPhase("start persister3", {"b": (Action("start", ("persister3",), "new writer"),)}))


async def phases() -> tuple[PlanPhase, ...]:
    return PHASES


async def members(store: MemoryStore, version: str = "1.0", **digests: str) -> None:
    for node, digest in digests.items():
        await store.put(KEYS.member(node), json.dumps({"config_digest": digest, "version": version}).encode())


async def cluster_led_by_a(applied: str = "old") -> tuple[MemoryStore, ChangeLeader]:
    store = MemoryStore()
    lease = await store.grant(30)
    await store.create(KEYS.leader, b"a", lease.id)
    await store.put(KEYS.applied, applied.encode())
    return store, ChangeLeader(store, KEYS, "a", "1.0")


def run(body: Any) -> Any:
    return asyncio.run(body())


def test_the_change_waits_for_every_node_that_takes_part_then_is_proposed_once() -> None:
    async def body() -> None:
        store, leader = await cluster_led_by_a()
        await members(store, a="new", b="old", c="old")  # c takes no part in PHASES
        waiting = await leader.look("new", phases)
        assert (waiting.did, waiting.waiting_for_files) == ("waiting for the new config files on b", ("b",))
        assert (await Planner(store, KEYS).read())[0] is None
        await members(store, b="new")
        assert (await leader.look("new", phases)).did.startswith("proposed plan ")
        plan, _ = await Planner(store, KEYS).read()
        assert plan is not None and (plan.config_digest, plan.phases) == ("new", PHASES)
        assert (await leader.look("new", phases)).did == "phase prepare: waiting for a, b"
    run(body)


def test_a_plan_is_advanced_and_once_done_its_digest_is_the_applied_one() -> None:
    async def body() -> None:
        store, leader = await cluster_led_by_a()
        await members(store, a="new", b="new")
        await leader.look("new", phases)
        planner = Planner(store, KEYS)
        for phase in range(len(PHASES)):
            plan, _ = await planner.read()
            assert plan is not None and plan.phase == phase
            for node in plan.current.nodes:
                await planner.acknowledge(plan, node)
            await leader.look("new", phases)
        plan, _ = await planner.read()
        assert plan is not None and plan.state is PlanState.DONE
        assert (await leader.look("new", phases)).did == "no change"
        assert (await store.get(KEYS.applied)).value == b"new"  # type: ignore[union-attr]
    run(body)


def test_an_aborted_change_is_not_proposed_again_but_the_next_change_is() -> None:
    async def body() -> None:
        store, leader = await cluster_led_by_a()
        await members(store, a="new", b="new")
        await leader.look("new", phases)
        assert await Planner(store, KEYS).abort("admin")
        assert "aborted" in (await leader.look("new", phases)).did
        await members(store, a="newer", b="newer")
        assert (await leader.look("newer", phases)).did.startswith("proposed plan ")
    run(body)


def test_a_node_without_the_leader_key_only_looks() -> None:
    async def body() -> None:
        store, _ = await cluster_led_by_a()
        await members(store, a="new", b="new")
        assert (await ChangeLeader(store, KEYS, "b", "1.0").look("new", phases)).did == "not the leader"
        assert (await Planner(store, KEYS).read())[0] is None
    run(body)


def test_the_first_leader_records_its_files_as_the_applied_ones() -> None:
    async def body() -> None:
        store, leader = await cluster_led_by_a()
        await store.delete(KEYS.applied)
        assert (await leader.look("first", phases)).did == "no change"
        assert (await store.get(KEYS.applied)).value == b"first"  # type: ignore[union-attr]
    run(body)


def test_behind_and_old_files() -> None:
    assert behind(PHASES, "new", {"a": "new"}) == ["b"], "a node that takes part and is down is behind"
    assert old_files({"a": "new", "b": "old", "c": "old"}, "old") == ["b", "c"]
    assert old_files({"a": "old", "b": "old"}, "old") == [], "nobody has new files: nothing is waited for"


def test_a_node_with_another_synsup_version_takes_no_part_until_it_runs_the_leaders() -> None:
    async def body() -> None:
        store, leader = await cluster_led_by_a()
        await members(store, a="new")
        await members(store, version="0.9", b="new")
        waiting = await leader.look("new", phases)
        assert (waiting.did, waiting.waiting_for_files) == (
            "waiting for node b: it runs synsup 0.9, the leader 1.0 (upgrade synsup there)", ("b",))
        await members(store, b="new")
        assert (await leader.look("new", phases)).did.startswith("proposed plan ")
    run(body)
