"""Executing a reload plan on a running Supervisor, action by action.

Each start/restart waits until its units are ready or one of them fails its first attempt.
A unit that does not become ready halts the plan: the units not yet restarted keep running
their old config, the failed one is started again with the last good one (rollback), and
the reload ends `partial`."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Mapping

import structlog

from ..engine.supervisor import Supervisor
from ..engine.unit import Unit
from ..engine.unit_state import UnitState
from ..plans import Action
from ..spec import UnitSpec

S = UnitState
log = structlog.get_logger()


class PartialReload(Exception):
    def __init__(self, unit: str, error: str, done: list[str]) -> None:
        super().__init__(f"{unit} did not become ready: {error}")
        self.unit, self.error, self.done = unit, error, done


def _outcome_known(unit: Unit) -> bool:
    return unit.state is S.READY or unit.failed_attempts > 0 or unit.settled


Progress = Callable[[str], Awaitable[None]]


async def apply_actions(sup: Supervisor, actions: list[Action], specs: list[UnitSpec],
                        last_good: Mapping[str, UnitSpec], progress: Progress | None = None,
                        finish: bool = True, counts: set[str] | None = None) -> None:
    """Apply `actions`; raise PartialReload at the first unit that does not become ready.
    `progress` gets one line per action done. Without `finish` (one phase of a change across
    nodes) the units the actions do not name keep their specs until `finish_change`, and
    `counts` (`must_become_ready` before the first phase) says which units halt it."""
    new = {s.name: s for s in specs}
    counts = must_become_ready(sup, specs) if counts is None else counts
    for spec in specs:  # units to be added exist (stopped) from the start, so dependencies resolve
        if spec.name not in sup.units:
            sup.set_spec(spec)
    done: list[str] = []
    for action in actions:
        log.info("reload.action", action=action.describe())
        began = sup.clock.monotonic()
        started = await _apply(sup, action, new)
        failed = [u for u in started if u.state is not S.READY and u.spec.name in counts]
        for unit in started:
            if unit.state is not S.READY and unit.spec.name not in counts:
                log.warning("reload.still_not_ready", unit=unit.spec.name, error=unit.error)
        if failed:
            partial = PartialReload(failed[0].spec.name, failed[0].error or failed[0].state.value, done)
            await _roll_back(sup, failed, last_good)
            raise partial
        done.append(action.describe())
        if progress is not None:
            took = sup.clock.monotonic() - began
            await progress(f"{action.verb:<8} {', '.join(action.units)}: {'ready' if started else 'done'} ({took:.1f}s)")
    if finish:
        await finish_change(sup, specs)


def must_become_ready(sup: Supervisor, specs: list[UnitSpec]) -> set[str]:
    """A unit that was not ready before the change (failed, waiting) failing again is no reason to
    halt, unless others need it: only units that worked before, that the change adds, or that
    others depend on can make it partial."""
    counts = {n for n, u in sup.units.items() if u.state is S.READY} | ({s.name for s in specs} - set(sup.units))
    return counts | {n for n in sup.units if sup.dependents(n)}


async def finish_change(sup: Supervisor, specs: list[UnitSpec]) -> None:
    """The change is made: units it dropped are stopped and forgotten, the others take their new
    specs (for their next start)."""
    new = {s.name for s in specs}
    for name in [n for n in sup.units if n not in new]:
        await sup.units[name].stop()
        sup.remove(name)
    for spec in specs:
        sup.set_spec(spec)


async def _apply(sup: Supervisor, action: Action, new: dict[str, UnitSpec]) -> list[Unit]:
    units = [sup.units[n] for n in action.units if n in sup.units]
    if action.verb == "stop":
        await asyncio.gather(*(u.stop() for u in units))
        for name in [n for n in action.units if n not in new and n in sup.units]:
            sup.remove(name)
    elif action.verb in ("start", "restart"):
        await asyncio.gather(*(u.stop() for u in units))  # a running unit takes new config only by restarting
        started = [u for u in (sup.set_spec(new[n]) for n in action.units if n in new) if not u.held]
        for unit in started:
            unit.start(reset=True)
        await sup.wait_all(started, _outcome_known)
        return started
    elif action.verb == "signal":
        for unit in units:
            unit.send_signal(signal.SIGHUP)
        return await _retry_failed(sup, [u for u in units if u.state is S.FAILED])
    return []


async def _retry_failed(sup: Supervisor, failed: list[Unit]) -> list[Unit]:
    """A unit failed (perhaps by the file this change fixed) has no process to signal: it is
    tried again at once, not after its cool-down."""
    await asyncio.gather(*(u.stop() for u in failed))
    for unit in failed:
        unit.start(reset=True)
    await sup.wait_all(failed, _outcome_known)
    return failed


async def _roll_back(sup: Supervisor, failed: list[Unit], last_good: Mapping[str, UnitSpec]) -> None:
    for unit in failed:
        log.error("reload.unit_failed", unit=unit.spec.name, error=unit.error)
        await unit.stop()
        good = last_good.get(unit.spec.name)
        if good is None:
            continue  # a unit the reload added: it stays stopped
        sup.set_spec(good)
        unit.start(reset=True)
        log.info("reload.rolled_back", unit=unit.spec.name)
