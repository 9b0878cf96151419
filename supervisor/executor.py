"""Executing a reload plan on a running Supervisor, action by action."""

from __future__ import annotations

import asyncio
import signal

import structlog

from .actions import Action
from .engine import Supervisor
from .spec import UnitSpec

log = structlog.get_logger()


async def apply_actions(sup: Supervisor, actions: list[Action], specs: list[UnitSpec]) -> None:
    new = {s.name: s for s in specs}
    for spec in specs:  # units to be added exist (stopped) from the start, so dependencies resolve
        if spec.name not in sup.units:
            sup.set_spec(spec)
    for action in actions:
        log.info("reload.action", action=action.describe())
        await _apply(sup, action, new)
    for name in [n for n in sup.units if n not in new]:
        await sup.units[name].stop()
        sup.remove(name)
    for spec in specs:
        sup.set_spec(spec)


async def _apply(sup: Supervisor, action: Action, new: dict[str, UnitSpec]) -> None:
    units = [sup.units[n] for n in action.units if n in sup.units]
    if action.verb == "stop":
        await asyncio.gather(*(u.stop() for u in units))
        for name in [n for n in action.units if n not in new and n in sup.units]:
            sup.remove(name)
    elif action.verb in ("start", "restart"):
        await asyncio.gather(*(u.stop() for u in units))  # a running unit takes new config only by restarting
        started = [sup.set_spec(new[n]) for n in action.units if n in new]
        for unit in started:
            unit.start(reset=True)
        await sup.wait_settled(started)
    elif action.verb == "signal":
        for unit in units:
            unit.send_signal(signal.SIGHUP)
