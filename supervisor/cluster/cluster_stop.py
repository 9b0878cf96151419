"""`synsup stop` given on a node of a cluster (issue 18), the store's side: the order in which the
nodes' units stop (the single-host order across nodes: each start step, last first, on every node
that runs units of it, before the step before it), the `stopping` key that makes one cluster stop
at a time (created once, under the lease of the node that coordinates it: it goes with that
node's daemon), and which nodes are up. Pure coordination: no processes; any Store."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..spec import UnitSpec
from .membership import Keys
from .store import Store


@dataclass(frozen=True)
class StopStep:
    name: str  # the step's name ("workers") or its units
    units: dict[str, list[str]]  # node -> its units of this step

    def describe(self) -> str:
        return f"{self.name} (on {', '.join(self.units)})"


def stop_steps(specs: Iterable[UnitSpec], node_of: Mapping[str, str], nodes: Iterable[str]) -> list[StopStep]:
    """Every node's processes in the single-host stop order across nodes: the units of the last
    start step on every node, then those of the step before, and so on. Units synsup only probes
    (no argv) are left out; the nodes in cluster.yaml's order."""
    order = list(nodes)
    by_step: dict[int, list[UnitSpec]] = {}
    for spec in specs:
        if spec.argv is not None and node_of.get(spec.name) in order:
            by_step.setdefault(spec.step, []).append(spec)
    steps = []
    for step in sorted(by_step, reverse=True):
        run = by_step[step]
        units = {n: [s.name for s in run if node_of[s.name] == n] for n in order}
        steps.append(StopStep(run[0].step_name or ", ".join(s.name for s in run), {n: u for n, u in units.items() if u}))
    return steps


def stopping_key(keys: Keys) -> str:
    return f"{keys.prefix}stopping"


async def take_stop(store: Store, keys: Keys, node: str, lease: int) -> str | None:
    """Begin a cluster stop coordinated by `node`: None, or the node whose stop is in progress
    (the key lives as long as its lease)."""
    if await store.create(stopping_key(keys), json.dumps({"node": node, "at": time.time()}).encode(), lease):
        return None
    kv = await store.get(stopping_key(keys))
    if kv is None:  # ended meanwhile: try once more
        return await take_stop(store, keys, node, lease)
    return str(json.loads(kv.value).get("node") or "?")


async def up_nodes(store: Store, keys: Keys) -> set[str]:
    """The nodes whose daemon holds its lease (members/<node> present)."""
    return {kv.key.removeprefix(keys.members) for kv in await store.get_prefix(keys.members)}
