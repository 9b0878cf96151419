"""The admin's words to a cluster's store (`synsup cluster abort|ack|remove-node`, issue 18), each
one a few reads and one guarded write; a refusal is a SynsupError naming what to do instead.

- abort: the plan in progress stops going forward (state aborted); what already ran keeps
  running, nothing is undone. The leader does not propose that change again: the next one is.
- ack --node N --phase P: acknowledge the phase in progress for a node that is gone for good (its
  processes are known dead), so the plan can go on without it. Refused while N is up (its daemon
  acknowledges for itself) and when P is not the phase in progress.
- remove-node N: forget a node that is down: its member, units, placement and note keys."""

from __future__ import annotations

from ..errors import SynsupError
from .cluster_plan import ClusterPlan, Planner, PlanState
from .membership import Keys
from .store import Store


async def running_plan(planner: Planner) -> ClusterPlan:
    plan, _ = await planner.read()
    if plan is None or plan.state is not PlanState.RUNNING:
        raise SynsupError("no plan in progress (see `synsup status --cluster`)")
    return plan


async def abort(store: Store, keys: Keys) -> str:
    planner = Planner(store, keys)
    plan = await running_plan(planner)
    if not await planner.abort("synsup cluster abort"):
        raise SynsupError("the plan changed while it was being aborted; look at `synsup status --cluster` and try again")
    return (f"plan {plan.id} aborted at phase {plan.current.name}: nothing goes forward, what already ran keeps "
            "running; the next config change is planned afresh")


def phase_named(plan: ClusterPlan, phase: str) -> bool:
    """--phase: the phase in progress, by its number (from 0) or its name."""
    return phase == str(plan.phase) or phase == plan.current.name


async def ack(store: Store, keys: Keys, node: str, phase: str) -> str:
    planner = Planner(store, keys)
    plan = await running_plan(planner)
    if not phase_named(plan, phase):
        raise SynsupError(f"the plan is at phase {plan.phase} ({plan.current.name}), not {phase!r}; pass "
                          f"--phase {plan.phase}")
    if node not in plan.current.steps:
        raise SynsupError(f"phase {plan.current.name} does not wait for node {node} (it waits for "
                          f"{', '.join(plan.current.nodes)})")
    if await store.get(keys.member(node)) is not None:
        raise SynsupError(f"node {node} is up: its daemon acknowledges for itself; `synsup cluster ack` is for a "
                          "node that is gone for good (stop its daemon and its processes first)")
    await planner.acknowledge(plan, node)
    return f"phase {plan.current.name} acknowledged for node {node} (gone for good): the leader goes on without it"


async def remove_node(store: Store, keys: Keys, node: str) -> str:
    if await store.get(keys.member(node)) is not None:
        raise SynsupError(f"node {node} is up: stop its daemon (`synsup stop` on it) before removing it")
    removed = [key for key in (keys.units + node, keys.placed + node, keys.notes + node) if await store.delete(key)]
    if not removed:
        raise SynsupError(f"the store knows no node {node}")
    return f"node {node} removed from the store; remove it from cluster.yaml on every host too"
