"""The supervisor: units wired by their dependencies, started and stopped by step."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeVar

import structlog

from ..spec import StartBeside, UnitSpec, steps_of
from .adopted import AdoptedChild
from .clock import Clock
from .flag import Flag
from .health import Timing
from .log_watch import LogWatch
from .notify_socket import NotifySocket
from .process import Spawner, stop_child
from .restart_policy import RestartPolicy
from .start_beside import StartBesideChecks
from .start_cores import StartCores
from .unit import Unit
from .unit_output import KEEP_FILES, MAX_BYTES, UnitOutput
from .unit_state import UnitState

S = UnitState
T = TypeVar("T")


def settled(unit: Unit) -> bool:
    """Ready with its process alive, or stopped by the admin (an intended state). A ready unit
    whose process just exited is not (the daemon is degraded at once, without a look at every
    other unit on the way to the respawn)."""
    if unit.state is S.READY:
        return unit.child is None or not unit.child.exited
    return unit.held and unit.state is S.STOPPED


def _spawned(unit: Unit) -> bool:
    """Its process runs (starting or ready): a unit may start beside it."""
    return unit.state in (S.STARTING, S.READY) and unit.child is not None and not unit.child.exited


class Supervisor:
    def __init__(self, specs: list[UnitSpec], *, log_dir: str, notify_dir: str | None,
                 clock: Clock | None = None, spawner: Spawner | None = None,
                 timing: Timing | None = None, policy: Callable[[], RestartPolicy] = RestartPolicy,
                 log_max_bytes: int = MAX_BYTES, log_backups: int = KEEP_FILES, cores: int | None = None) -> None:
        self.log_max_bytes, self.log_backups = log_max_bytes, log_backups
        self.clock = clock or Clock()
        self.spawner = spawner or Spawner()
        self.timing = timing or Timing()
        self.policy = policy
        self.log_dir, self.notify_dir = log_dir, notify_dir
        self.units: dict[str, Unit] = {}
        self._order: list[Unit] = []  # the units, for all_ready's look that goes on where it stopped
        self._unready_at = 0  # where all_ready last found a unit not ready
        self.unpaused = Flag()  # cleared by `synsup pause`
        self.unpaused.set()
        self._notify: NotifySocket | None = None  # every unit's, made when the first unit needs it
        self._changed = Flag()
        self._listeners: list[Callable[[Unit], None]] = []
        self._before_stop: Callable[[Unit], Awaitable[None]] | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._group: asyncio.TaskGroup | None = None
        self._log_watch: LogWatch | None = None  # while `keep_logs` runs
        self.log = structlog.get_logger()
        self.start_checks = StartBesideChecks(self.clock, self._poke)
        self.start_cores = StartCores(cores)  # turns of the starts that keep a core busy
        for spec in specs:
            self._add(spec)
        self._wire()

    # -- building
    def _add(self, spec: UnitSpec) -> Unit:
        unit = Unit(spec, clock=self.clock, spawner=self.spawner,
                    output=UnitOutput.for_unit(self.log_dir, spec.name, self.log_max_bytes, self.log_backups),
                    notify=self._notify_socket, policy=self.policy(), timing=self.timing,
                    on_change=self._unit_changed, unpaused=self.unpaused)
        unit.before_stop = self._before_stop
        unit.start_gate = self._start_gate
        unit.start_cores = self.start_cores
        unit.output.on_open = self._log_opened
        self.units[spec.name] = unit
        return unit

    def _wire(self) -> None:
        self._order = list(self.units.values())
        for unit in self.units.values():
            unit.dependencies = [self.units[d] for d in unit.spec.dependencies if d in self.units]

    def set_spec(self, spec: UnitSpec) -> Unit:
        """Add a unit, or give an existing one the spec its next start uses."""
        unit = self.units.get(spec.name)
        if unit is None:
            unit = self._add(spec)
            if self._group is not None:
                self.spawn_tasks(self._group)
        else:
            unit.spec = spec
        self._wire()
        return unit

    def remove(self, name: str) -> None:
        """Forget a stopped unit."""
        unit = self.units.pop(name)
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
        unit.output.close()
        if self._log_watch is not None:
            self._log_watch.forget(unit.output)
        self._wire()

    def steps(self) -> list[list[Unit]]:
        return [[self.units[n] for n in step] for step in steps_of([u.spec for u in self.units.values()])]

    def stop_order(self) -> list[str]:
        """The steps in the order `stop_all` takes them, each by its name ("workers") or its units."""
        order = []
        for step in reversed(self.steps()):
            run = [u.spec for u in step if u.spec.argv is not None]
            if run:
                order.append(run[0].step_name or ", ".join(s.name for s in run))
        return order

    def set_before_stop(self, hook: Callable[[Unit], Awaitable[None]]) -> None:
        """Awaited before every stop of a ready unit, whoever asks for it (units added later too)."""
        self._before_stop = hook
        for unit in self.units.values():
            unit.before_stop = hook

    # -- change notification
    def add_listener(self, listener: Callable[[Unit], None]) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[Unit], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _poke(self) -> None:
        """Something a `wait_until` predicate reads changed (not a unit)."""
        self._changed.set()
        self._changed = Flag()

    def _unit_changed(self, unit: Unit) -> None:
        self.start_cores.changed(unit)
        self._poke()
        for listener in list(self._listeners):
            listener(unit)

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self._changed.wait()

    async def _start_gate(self, unit: Unit) -> None:
        """Until `unit` (whose spec has `start_beside`) may start: every dependency ready (or
        held), as always; or, once its check passed for this start, those it may start beside
        spawned (their processes running, not yet ready) and the others ready."""
        beside = unit.spec.start_beside
        assert beside is not None

        def after_them() -> bool:
            return all(d.held or d.ready_event.is_set() for d in unit.dependencies)

        if not _check_speaks_for(beside, [unit.spec, *(d.spec for d in unit.dependencies if d.spec.name in beside.units)]):
            self.log.info("unit.not_beside", unit=unit.spec.name, reason="its check runs other code than the units")
            await self.wait_until(after_them)
            return
        verdict = self.start_checks.verdict(beside)

        def may_start() -> bool:
            allowed = verdict.done() and not verdict.cancelled() and verdict.exception() is None and verdict.result()
            return all(d.held or d.ready_event.is_set() or (allowed and d.spec.name in beside.units and _spawned(d))
                       for d in unit.dependencies)

        await self.wait_until(may_start)
        if not after_them():
            self.log.info("unit.starts_beside", unit=unit.spec.name,
                          beside=[d.spec.name for d in unit.dependencies if not d.ready_event.is_set()])

    async def wait_settled(self, units: Iterable[Unit]) -> None:
        await self.wait_all(units, lambda u: u.settled)

    async def wait_all(self, units: Iterable[Unit], test: Callable[[Unit], bool]) -> None:
        """Until `test` holds for every one of `units` at once. Each look begins at the unit the
        last one stopped at (first_not): a start of 500 units looked at every ready one again
        on each change."""
        units = list(units)
        at = 0

        def every() -> bool:
            nonlocal at
            failing = first_not(units, at, test)
            at = failing or 0
            return failing is None
        await self.wait_until(every)

    # -- running
    def spawn_tasks(self, group: asyncio.TaskGroup) -> None:
        self._group = group
        for name, unit in self.units.items():
            if name not in self._tasks:
                self._tasks[name] = group.create_task(unit.supervise(), name=f"unit:{name}")

    def cancel_tasks(self) -> None:
        for task in self._tasks.values():
            task.cancel()

    def start_all(self) -> None:
        for unit in self.units.values():
            if not unit.held:
                unit.start()

    async def stop_all(self) -> None:
        self.log.info("supervisor.stopping")
        for step in reversed(self.steps()):
            await asyncio.gather(*(u.stop() for u in step))

    async def retire(self, pids: dict[str, int], token: str | None) -> None:
        """Stop processes an earlier daemon started that are not to be adopted (unit name -> pid),
        dependents first, each step together: SIGTERM, SIGKILL after the unit's stop timeout."""
        for step in reversed(self.steps()):
            await asyncio.gather(*(self._retire(u, pids[u.spec.name], token) for u in step if u.spec.name in pids))

    async def _retire(self, unit: Unit, pid: int, token: str | None) -> None:
        try:
            child = AdoptedChild(pid, unit.spec.name, token)
        except OSError:  # gone meanwhile
            return
        self.log.info("unit.retired", unit=unit.spec.name, pid=pid)
        await stop_child(child, asyncio.ensure_future(child.wait()), unit.spec.stop_timeout)

    async def restart(self, names: list[str]) -> None:
        if not names:
            await self.stop_all()
            self.start_all()
            await self.wait_settled(self.units.values())
            return
        units = [self.units[n] for n in names]
        await asyncio.gather(*(u.stop() for u in units))
        for unit in units:
            unit.held = False  # naming a unit is the admin asking for it
            unit.start(reset=True)
        await self.wait_settled(units)

    async def restart_rolling(self, names: list[str]) -> str | None:
        """One unit at a time, in dependency order: `names`, or every unit the spec lets roll
        (not held, not external). The first that is not ready again halts it: its name (None
        when every one came back)."""
        order = [u for step in self.steps() for u in step if (u.spec.name in names if names else
                 u.spec.rolling and u.spec.argv is not None and not u.held)]
        for unit in order:
            await self.restart([unit.spec.name])
            if unit.state is not S.READY:
                return unit.spec.name
        return None

    async def hold(self, names: list[str]) -> None:
        """Stop these units and keep them stopped (by admin) until `start_units`."""
        units = [self.units[n] for n in names]
        for unit in units:
            unit.held = True
        await asyncio.gather(*(u.stop() for u in units))

    async def start_units(self, names: list[str]) -> None:
        units = [self.units[n] for n in names]
        # a failed unit's task is in its cool-down: end it, so the start below tries at once
        await asyncio.gather(*(u.stop() for u in units if u.state is S.FAILED))
        for unit in units:
            unit.held = False
            unit.start(reset=True)
        await self.wait_settled(units)

    def dependents(self, name: str) -> list[str]:
        return [n for n, u in self.units.items() if name in u.spec.dependencies and not u.held]

    def adopt(self, pids: dict[str, int], token: str | None) -> list[str]:
        """Take over the processes an earlier daemon started (unit name -> pid); the names taken."""
        taken = []
        for name, pid in pids.items():
            unit = self.units.get(name)
            if unit is None:
                continue
            try:
                unit.adopt(AdoptedChild(pid, name, token))
            except OSError as e:  # gone meanwhile: it is started as usual
                self.log.warning("unit.adopt_failed", unit=name, pid=pid, error=str(e))
                continue
            taken.append(name)
        return taken

    async def keep_logs(self, interval: float) -> None:
        """Units write their logs themselves: rotate them by copy-truncate, a log looked at only
        `interval` after it changed (`log_watch`); runs until cancelled."""
        watch = self._log_watch = LogWatch(interval)
        try:
            for unit in self.units.values():
                if unit.output.written_by_process:
                    watch.watch(unit.output)
            await asyncio.Event().wait()
        finally:
            self._log_watch = None
            watch.close()

    def _log_opened(self, output: UnitOutput) -> None:
        if self._log_watch is not None:
            self._log_watch.watch(output)

    def reopen_logs(self) -> None:
        for unit in self.units.values():
            unit.output.reopen()

    def all_ready(self) -> bool:
        """Every unit ready and not degraded, but for those the admin stopped (an intended state)."""
        order = self._order
        if len(order) != len(self.units):
            order = self._order = list(self.units.values())
        unready = first_not(order, self._unready_at, _ready_now)
        self._unready_at = unready or 0
        return unready is None

    def _notify_socket(self) -> NotifySocket | None:
        """The notify socket of every unit, at a short path (no AF_UNIX length limit to reach)."""
        if self._notify is None and self.notify_dir:
            self._notify = NotifySocket(os.path.join(self.notify_dir, "notify.sock"))
        return self._notify

    def close(self) -> None:
        if self._notify is not None:
            self._notify.close()
            self._notify = None
        self.start_checks.close()
        self.start_cores.close()
        for unit in self.units.values():
            unit.output.close()


def _ready_now(unit: Unit) -> bool:
    return settled(unit) and not unit.degraded


def first_not(items: Sequence[T], begin: int, test: Callable[[T], bool]) -> int | None:
    """The index of an item `test` does not hold for, looked for from `begin` on (and then
    from the first); None when it holds for all. A caller that begins where the last look
    stopped looks at each item about once while they come true one by one, not once a look."""
    count = len(items)
    for index in itertools.chain(range(begin, count), range(min(begin, count))):
        if not test(items[index]):
            return index
    return None


def _check_speaks_for(beside: StartBeside, specs: list[UnitSpec]) -> bool:
    """The check is run by the program the units run (its first argument is theirs): a verdict of
    one release's code says nothing of another's (a unit moved to new code by a partial upgrade)."""
    return all(s.argv and s.argv[0] == beside.check[0] for s in specs)
