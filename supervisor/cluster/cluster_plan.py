"""A change across nodes as a plan in the store, advanced phase by phase (issue 18, Patroni's
pattern): the leader writes the plan once (`plan` absent or finished), each node carries out its
own steps of the phase in progress and then acknowledges (acks/<plan>/<phase>/<node>), and the
leader moves to the next phase in one transaction: plan unchanged since it was read AND the
leader key unchanged since it was won (a stale leader is fenced) AND every expected
acknowledgement present. Nothing times out into progress: a phase waits for its nodes.

The phases are the reload planner's actions in their order, each cut by node: for a persister
change, prepare (every node that runs an affected unit) -> stop the old persisters on every
node -> restart main -> stop the others -> start the new set and the others. A phase starts
only once every node acknowledged the one before, so no process with the new map starts while
one with the old map runs. Restarts (main, then the stream writers, then the others, as on one
host) keep that order across nodes: a unit restarts only in a phase after the one that restarted
what it depends on on another node (that node has acknowledged it ready again). Pure
coordination: no processes, no daemon; any Store (etcd, or in memory for tests)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from ..plans import Action
from .membership import Keys
from .store import Condition, Exists, KeyValue, Store, Unchanged

PREPARE = "prepare"


class PlanState(Enum):
    RUNNING = "running"
    DONE = "done"
    ABORTED = "aborted"


@dataclass(frozen=True)
class PlanPhase:
    name: str
    steps: dict[str, tuple[Action, ...]]  # node -> what it does in this phase, in order (prepare: nothing)

    @property
    def nodes(self) -> list[str]:
        """The nodes whose acknowledgement ends the phase."""
        return sorted(self.steps)


@dataclass(frozen=True)
class ClusterPlan:
    phases: tuple[PlanPhase, ...]
    config_digest: str  # the config every node must run before anything is done
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    phase: int = 0  # the phase in progress
    state: PlanState = PlanState.RUNNING

    @property
    def current(self) -> PlanPhase:
        return self.phases[self.phase]

    def next(self) -> ClusterPlan:
        if self.phase + 1 < len(self.phases):
            return replace(self, phase=self.phase + 1)
        return replace(self, state=PlanState.DONE)

    def encode(self) -> bytes:
        return json.dumps({"id": self.id, "config_digest": self.config_digest, "phase": self.phase,
                           "state": self.state.value, "phases": [
                               {"name": p.name, "steps": {n: [[a.verb, list(a.units), a.reason] for a in actions]
                                                          for n, actions in p.steps.items()}}
                               for p in self.phases]}).encode()

    @classmethod
    def decode(cls, data: bytes) -> ClusterPlan:
        raw = json.loads(data)
        phases = tuple(PlanPhase(p["name"], {n: tuple(Action(v, tuple(u), r) for v, u, r in actions)
                                              for n, actions in p["steps"].items()}) for p in raw["phases"])
        return cls(phases, raw["config_digest"], raw["id"], raw["phase"], PlanState(raw["state"]))


def cluster_phases(actions: list[Action], old_node_of: Mapping[str, str], new_node_of: Mapping[str, str],
                   depends_on: Mapping[str, Collection[str]] | None = None) -> tuple[PlanPhase, ...]:
    """prepare, then each action cut by node (a stop on the node that ran the unit, anything else on
    the node that runs it now). Consecutive restarts (the reload planner's, in its order: main, the
    stream writers, the others) share phases as far as their order allows (`restart_phases`):
    `depends_on` is unit -> the units it needs (the new config's dependencies); None: each restart
    needs every one before it."""
    phases: list[PlanPhase] = []
    run: list[Action] = []  # consecutive restarts, not yet cut into phases
    for action in [*actions, None]:
        if action is not None and action.verb == "restart":
            run.append(action)
            continue
        phases += restart_phases(run, new_node_of, depends_on)
        run = []
        if action is not None:
            phases.append(PlanPhase(action.describe(), _by_node(action, old_node_of if action.verb == "stop"
                                                                 else new_node_of)))
    involved = {n for p in phases for n in p.steps}
    return (PlanPhase(PREPARE, {n: () for n in involved}), *phases)


def restart_phases(restarts: list[Action], node_of: Mapping[str, str],
                   depends_on: Mapping[str, Collection[str]] | None) -> list[PlanPhase]:
    """Restarts in as few phases as the single-host order allows across nodes: a node's restart of
    units that need (directly or through others) a unit restarted before it on another node goes in
    a later phase than that one, so it begins only once that node acknowledged it ready; a node's
    own restarts keep their order (one phase each node goes through in order, as on one host)."""
    parts = [(n, step) for action in restarts for n, (step,) in _by_node(action, node_of).items()]
    levels: list[int] = []
    for i, (node, step) in enumerate(parts):
        needs = None if depends_on is None else _needs(step.units, depends_on)
        level = 0
        for j, (other, before) in enumerate(parts[:i]):
            if other == node:
                level = max(level, levels[j])
            elif needs is None or needs & set(before.units):
                level = max(level, levels[j] + 1)
        levels.append(level)
    phases: list[dict[str, tuple[Action, ...]]] = [{} for _ in range(max(levels, default=-1) + 1)]
    for (node, step), level in zip(parts, levels):
        phases[level][node] = phases[level].get(node, ()) + (step,)
    return [PlanPhase("restart", steps) for steps in phases]


def _needs(units: Collection[str], depends_on: Mapping[str, Collection[str]]) -> set[str]:
    """Every unit `units` depend on, directly or through others."""
    found: set[str] = set()
    todo = [d for u in units for d in depends_on.get(u, ())]
    while todo:
        unit = todo.pop()
        if unit not in found:
            found.add(unit)
            todo += depends_on.get(unit, ())
    return found


def restart_everywhere(placed: Mapping[str, str], new_node_of: Mapping[str, str], reads_config: set[str]) -> list[Action]:
    """The change when no node has the applied config's files any more (every node came back with
    new ones): it cannot be planned unit by unit from them. Every process the nodes last published
    (`placed`: unit -> node) that reads the shared config, or that the new config drops, stops on
    every node; then the new config's processes start together (each after its dependencies)."""
    why = "no node has the applied config's files: every Synapse process starts again on the new ones"
    stop = tuple(sorted(u for u in placed if u in reads_config or u not in new_node_of))
    start = tuple(sorted(u for u in new_node_of if u in reads_config))
    return [a for a in (Action("stop", stop, why), Action("start", start, why)) if a.units]


def still_stops(plan: ClusterPlan, node: str, acknowledged: bool) -> set[str]:
    """The units the plan in progress still stops on `node`: in the phase in progress (unless the
    node acknowledged it) and in those after it."""
    if plan.state is not PlanState.RUNNING:
        return set()
    phases = plan.phases[plan.phase + (1 if acknowledged else 0):]
    return {u for p in phases for a in p.steps.get(node, ()) if a.verb == "stop" for u in a.units}


def _by_node(action: Action, node_of: Mapping[str, str]) -> dict[str, tuple[Action, ...]]:
    nodes: dict[str, list[str]] = {}
    for unit in action.units:
        nodes.setdefault(node_of[unit], []).append(unit)
    return {n: (replace(action, units=tuple(units)),) for n, units in nodes.items()}


@dataclass(frozen=True)
class Advance:
    """What one attempt to move the plan on did."""

    advanced: bool
    plan: ClusterPlan | None = None  # the plan as it is now (advanced: the new phase)
    waiting_for: tuple[str, ...] = ()  # nodes whose acknowledgement is missing
    reason: str = ""


class Planner:
    """The store side of a plan, for the leader (propose, advance, abort) and every node (acknowledge)."""

    def __init__(self, store: Store, keys: Keys) -> None:
        self.store, self.keys = store, keys

    @property
    def plan_key(self) -> str:
        return f"{self.keys.prefix}plan"

    def ack_key(self, plan: ClusterPlan, phase: int, node: str) -> str:
        return f"{self.keys.prefix}acks/{plan.id}/{phase}/{node}"

    async def read(self) -> tuple[ClusterPlan | None, KeyValue | None]:
        seen = await self.store.get(self.plan_key)
        return (ClusterPlan.decode(seen.value) if seen else None), seen

    async def propose(self, plan: ClusterPlan, leader: KeyValue) -> bool:
        """Write the plan once: only when no plan runs, and only while `leader` still holds the key."""
        current, seen = await self.read()
        if current is not None and current.state is PlanState.RUNNING:
            return False
        return await self.store.transact([Unchanged(self.plan_key, seen.mod_revision if seen else 0),
                                          Unchanged(self.keys.leader, leader.mod_revision)],
                                         [(self.plan_key, plan.encode())])

    async def acknowledge(self, plan: ClusterPlan, node: str) -> None:
        """This node has done its steps of the phase in progress (processes really down, or ready)."""
        await self.store.put(self.ack_key(plan, plan.phase, node), node.encode())

    async def advance(self, leader: KeyValue) -> Advance:
        plan, seen = await self.read()
        if plan is None or seen is None or plan.state is not PlanState.RUNNING:
            return Advance(False, plan, reason="no plan in progress")
        expected = [self.ack_key(plan, plan.phase, n) for n in plan.current.nodes]
        missing = tuple([n for n, key in zip(plan.current.nodes, expected) if await self.store.get(key) is None])
        if missing:
            return Advance(False, plan, missing, f"phase {plan.current.name}: waiting for {', '.join(missing)}")
        after = plan.next()
        conditions: list[Condition] = [Unchanged(self.plan_key, seen.mod_revision),
                                       Unchanged(self.keys.leader, leader.mod_revision), *(Exists(k) for k in expected)]
        if await self.store.transact(conditions, [(self.plan_key, after.encode())]):
            return Advance(True, after)
        return Advance(False, plan, reason="the plan or the leader changed meanwhile: read again")

    async def abort(self, reason: str) -> bool:
        """Stop going forward (what already ran keeps running); False if the plan changed meanwhile."""
        plan, seen = await self.read()
        if plan is None or seen is None or plan.state is not PlanState.RUNNING:
            return False
        return await self.store.replace(self.plan_key, replace(plan, state=PlanState.ABORTED).encode(), seen.mod_revision)


def plan_status(plan: ClusterPlan | None, acked: set[str], up: set[str],
                notes: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """status --cluster's `plan`: the phase, the nodes it waits for, and why (a node that is down,
    or what a node's daemon noted: a step that failed). Blocked: it waits for such a node."""
    if plan is None or plan.state is not PlanState.RUNNING:
        return None
    waiting = [n for n in plan.current.nodes if n not in acked]
    down = [n for n in waiting if n not in up]
    noted = [f"node {n}: {notes[n]}" for n in waiting if n in up and notes and n in notes]
    reasons = ([f"node {', '.join(down)} is down"] if down else []) + noted
    return {"id": plan.id, "phase": plan.current.name, "waiting_for": waiting, "reason": "; ".join(reasons),
            "blocked": bool(reasons)}
