"""The planner's rules as properties (hypothesis), over the in-memory store and, for faults, the
in-memory cluster with a fake clock (tests/cluster_model.py):
- a change cut by node: every unit's step is on the node that ran it (a stop) or runs it now
  (anything else), in the reload planner's order, and prepare waits for every node that acts;
- any interleaving of acknowledgements, advances, leader changes and stale leaders: the plan
  moves one phase at a time, only once every node of the phase acknowledged it, and a leader
  that lost the key never moves it;
- any fault, on any node, at any phase, for any time: the change ends done or blocked with a
  reason, and no new-map process runs beside an old-map events writer."""

from __future__ import annotations

import asyncio
from typing import Any

from cluster_model import FAULTS, PHASES, TTL, persister_change
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from memory_store import MemoryStore

from synsup.supervisor.cluster.cluster_plan import PREPARE, ClusterPlan, Planner, PlanState, cluster_phases
from synsup.supervisor.cluster.membership import Keys
from synsup.supervisor.plans import Action

KEYS = Keys("/p/")
NODES = ("a", "b", "c")
UNITS = ("main", "persister1", "persister2", "persister3", "generic1", "sender1")
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

placements = st.fixed_dictionaries({u: st.sampled_from(NODES) for u in UNITS})
actions = st.lists(st.builds(Action, st.sampled_from(("stop", "start", "restart")),
                             st.lists(st.sampled_from(UNITS), min_size=1, max_size=3, unique=True).map(tuple),
                             st.just("changed")), min_size=1, max_size=6)


@PROPERTY
@given(actions, placements, placements)
def test_every_step_is_on_the_node_of_its_unit_in_the_planners_order(change: list[Action], old: dict[str, str],
                                                                    new: dict[str, str]) -> None:
    phases = cluster_phases(change, old, new)
    assert phases[0].name == PREPARE and all(s == () for s in phases[0].steps.values())
    assert set(phases[0].nodes) == {n for p in phases[1:] for n in p.nodes}, "prepare: every node that acts"
    done = [(a.verb, u, n) for p in phases[1:] for n, steps in p.steps.items() for a in steps for u in a.units]
    wanted = [(a.verb, u, (old if a.verb == "stop" else new)[u]) for a in change for u in a.units]
    assert sorted(done) == sorted(wanted), "each unit's step once, on its node"
    order = [a.verb for a in change]
    merged = [v for i, v in enumerate(order) if not (v == "restart" and i and order[i - 1] == "restart")]
    names = [p.name.split()[0] for p in phases[1:]]
    assert [v for i, v in enumerate(names) if not (v == "restart" and i and names[i - 1] == "restart")] == merged, \
        "the planner's order, consecutive restarts in as many phases as their order needs"
    for node in {n for p in phases for n in p.steps}:
        ran = [(a.verb, u) for p in phases[1:] for a in p.steps.get(node, ()) for u in a.units]
        assert ran == [(a.verb, u) for a in change for u in a.units if (old if a.verb == "stop" else new)[u] == node], \
            f"node {node}: its steps in the planner's order"


# what units/unit_specs.py gives: main needs Redis, a writer main, any other worker main and the writers
NEEDS = {"main": ("redis",), **{p: ("main",) for p in UNITS if p.startswith("persister")},
         "generic1": ("main", "persister1", "persister2", "persister3"), "sender1": ("main", "persister1")}
restarts = st.lists(st.sampled_from(("redis", *UNITS)), min_size=1, max_size=7, unique=True).map(
    lambda units: [Action("restart", (u,), "changed") for u in sorted(units, key=("redis", *UNITS).index)])


@PROPERTY
@given(restarts, st.fixed_dictionaries({u: st.sampled_from(NODES) for u in ("redis", *UNITS)}))
def test_no_unit_restarts_before_or_beside_a_dependency_restarted_on_another_node(
        change: list[Action], placed: dict[str, str]) -> None:
    phases = cluster_phases(change, placed, placed, NEEDS)
    phase_of = {u: i for i, p in enumerate(phases) for a in p.steps.values() for step in a for u in step.units}
    assert set(phase_of) == {a.units[0] for a in change}, "each restart once"
    for unit, i in phase_of.items():
        for needed in NEEDS.get(unit, ()):
            if needed in phase_of and placed[needed] != placed[unit]:
                assert phase_of[needed] < i, f"{unit} ({placed[unit]}) restarts in phase {i}, beside or before " \
                                             f"{needed} ({placed[needed]}, phase {phase_of[needed]}) that it needs"
    for i in range(2, len(phases)):  # no phase for nothing: each has a unit that needs one of the phase before
        assert any(placed[v] != placed[u] and v in _needs(u) for u in _units(phases[i]) for v in _units(phases[i - 1])), \
            f"phase {i} could be one with phase {i - 1}: the plan is longer than its order needs"


def _units(phase: Any) -> set[str]:
    return {u for actions in phase.steps.values() for a in actions for u in a.units}


def _needs(unit: str) -> set[str]:
    found, todo = set(), list(NEEDS.get(unit, ()))
    while todo:
        if (u := todo.pop()) not in found:
            found.add(u)
            todo += NEEDS.get(u, ())
    return found


moves = st.lists(st.one_of(st.tuples(st.just("ack"), st.sampled_from(NODES)),
                           st.tuples(st.just("advance"), st.sampled_from(("leader", "stale"))),
                           st.tuples(st.just("new leader"), st.sampled_from(NODES))), max_size=60)


@PROPERTY
@given(actions, placements, placements, moves)
def test_the_plan_moves_one_phase_at_a_time_only_with_every_ack_and_never_for_a_stale_leader(
        change: list[Action], old: dict[str, str], new: dict[str, str], steps: list[tuple[str, str]]) -> None:
    async def body() -> None:
        store = MemoryStore()
        planner = Planner(store, KEYS)
        lease = await store.grant(30)
        await store.create(KEYS.leader, b"a", lease.id)
        leader: Any = await store.get(KEYS.leader)
        stale = leader
        plan = ClusterPlan(cluster_phases(change, old, new), "digest")
        assert await planner.propose(plan, leader)
        for move, who in steps:
            before, _ = await planner.read()
            assert before is not None
            if move == "ack" and before.state is PlanState.RUNNING and who in before.current.nodes:
                await planner.acknowledge(before, who)
            elif move == "new leader":
                stale = leader
                store.expire(leader.lease)
                lease = await store.grant(30)
                await store.create(KEYS.leader, who.encode(), lease.id)
                leader = await store.get(KEYS.leader)
            elif move == "advance":
                acked = {n for n in before.current.nodes
                         if await store.get(planner.ack_key(before, before.phase, n)) is not None} \
                    if before.state is PlanState.RUNNING else set()
                result = await planner.advance(leader if who == "leader" else stale)
                if who == "stale" and stale is not leader:
                    assert not result.advanced, "a leader that lost the key moved the plan"
                if result.advanced:
                    assert acked == set(before.current.nodes), "a phase entered before every ack of the last"
                    after, _ = await planner.read()
                    assert after is not None and (after.phase == before.phase + 1 or after.state is PlanState.DONE)
    asyncio.run(body())


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.sampled_from(FAULTS), st.integers(0, len(PHASES) - 1), st.sampled_from((None, *NODES)),
       st.sampled_from((0.5, 2.0, TTL - 1.0, TTL + 1.0, 3.0 * TTL)))
def test_any_fault_anywhere_ends_done_or_blocked_with_a_reason_never_with_the_maps_overlapping(
        fault: str, at: int, node: str | None, down_for: float) -> None:
    outcome = asyncio.run(persister_change(fault, at, node=node, down_for=down_for))
    assert outcome.invariant_held, outcome.overlaps
    assert outcome.outcome.startswith(("done", "blocked: ")), outcome
