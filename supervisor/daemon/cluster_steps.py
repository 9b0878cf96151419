"""One node's steps of a phase of a change across nodes (supervisor/daemon/cluster_node.py runs
them as an operation): the reload plan executor on this node's actions, with the stand-ins the
new config needs added first, and done only once every stopped unit's ports are closed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..engine.preflight import addresses_in_use
from ..engine.supervisor import Supervisor
from ..plans import Action
from ..source import Loaded
from ..spec import UnitSpec
from .config_snapshot import ConfigSnapshot
from .plan_executor import apply_actions
from .running_config import RunningConfig

PORTS_CLOSED_WAIT = 10.0  # seconds a stopped unit's ports may take to close before the step fails


@dataclass(frozen=True)
class FullView:
    """The whole deployment (every node's units) and which node runs each unit."""

    loaded: Loaded
    node_of: Mapping[str, str]


@dataclass
class Prepared:
    """This node's side of a plan, checked in its prepare phase: the node's view of the new config."""

    new: Loaded
    snapshot: ConfigSnapshot | None
    specs: list[UnitSpec]
    counts: set[str]  # the units whose failure halts a step (as they were before the first one)


async def apply_steps(sup: Supervisor, running: RunningConfig, prepared: Prepared, steps: list[Action],
                      held_for_plan: set[str], report_remote: Callable[[], None]) -> None:
    """Raise PartialReload (a unit did not become ready) or TimeoutError (ports stayed open)."""
    for spec in prepared.specs:  # a remote unit the new config needs here: its stand-in first
        unit = sup.units.get(spec.name)
        if spec.reported and (unit is None or (unit.held and spec.name in held_for_plan)):
            unit = sup.set_spec(spec)
            unit.held = False
            unit.start()
    report_remote()  # the stand-ins just added learn what the store says
    for name in {u for a in steps for u in a.units if u in sup.units and u in held_for_plan}:
        sup.units[name].held = False  # held since the daemon came back mid-plan (or fenced): its step is now
    last_good = running.last_good({n: u.spec for n, u in sup.units.items()})
    # before the step: a stopped unit the new config does not run here is forgotten by it
    stopped = [sup.units[n].spec for a in steps if a.verb == "stop" for n in a.units if n in sup.units]
    await apply_actions(sup, steps, prepared.specs, last_good, finish=False, counts=prepared.counts)
    await ports_closed(stopped)


async def ports_closed(specs: list[UnitSpec], timeout: float = PORTS_CLOSED_WAIT) -> None:
    """Until no address these (stopped) units listen on is taken; TimeoutError after `timeout`."""
    async with asyncio.timeout(timeout):
        while await asyncio.to_thread(addresses_in_use, [s for s in specs if s.listens]):
            await asyncio.sleep(0.1)
