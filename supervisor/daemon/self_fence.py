"""`self_fence: true` (cluster.yaml): a node that has lost its lease in the store cannot know
whether the cluster moved on to another shard map without it, so the processes that hold the
map (those that run the application's code) stop, last step first, and stay held until the
node is back; Redis and the database run on. Off by default: a partition then costs nothing
(the node keeps its processes running and starts nothing new)."""

from __future__ import annotations

import asyncio

from ..engine.supervisor import Supervisor
from .unit_code import UnitCode


async def fence(sup: Supervisor) -> set[str]:
    """Stop and hold every unit that runs the application's code; the names stopped."""
    fenced: set[str] = set()
    for step in reversed(sup.steps()):
        units = [u for u in step if UnitCode.runs_code(u.spec) and not u.held]
        for unit in units:
            unit.held = True
            fenced.add(unit.spec.name)
        await asyncio.gather(*(u.stop() for u in units))
    return fenced


def unfence(sup: Supervisor, names: set[str]) -> None:
    """The node is back: the fenced units start again (each after its dependencies)."""
    for name in sorted(names):
        unit = sup.units.get(name)
        if unit is not None and unit.held:
            unit.held = False
            unit.start(reset=True)
