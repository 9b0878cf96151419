"""`synsup upgrade`, run as one operation: plan (the source checks the new code and says what
to run), run the plan's commands (a schema migration) while everything keeps serving, then
restart units in the plan's order with readiness gating. A unit that does not become ready
halts it: the units not yet restarted keep the old code. `Upgrades` owns the last result."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from ..engine.process import REAPER
from ..owner_mark import VARIABLE, command_mark, new_nonce
from ..plans import Command, UpgradePlan
from ..protocol import Refusal, UpgradePlanReply, UpgradeResult
from ..source import Loaded
from ..spec import UnitSpec
from .operations import OperationView, Phase
from .plan_executor import PartialReload, apply_actions
from .unit_code import main_code

if TYPE_CHECKING:
    from .config_snapshot import ConfigSnapshot
    from .records import Records

log = structlog.get_logger()
Upgrader = Callable[[Loaded, str | None, bool], UpgradePlan]  # (current, python, allow_downtime)
Progress = Callable[[str], Awaitable[None]]
OUTPUT_TAIL = 5  # lines of a failed command's output in the error


class _Applies(Protocol):
    def applied(self, new: Loaded, snapshot: ConfigSnapshot | None, changed: bool = True,
                reloader: Callable[[], Loaded] | None = None) -> None: ...


class UpgradesView(OperationView, Protocol):
    """What Upgrades uses of the daemon: an operation's view, its config, its records and
    owner token (a migration's pid, marked), and Reloads to say a new config runs."""

    @property
    def current(self) -> Loaded: ...

    @property
    def reloads(self) -> _Applies: ...

    @property
    def records(self) -> Records: ...

    @property
    def token(self) -> str: ...


class Upgrades:
    def __init__(self, daemon: UpgradesView, upgrader: Upgrader | None) -> None:
        self.daemon, self.upgrader = daemon, upgrader
        self.last: dict[str, Any] | None = None  # the last upgrade's result, for status
        self._commands: set[int] = set()  # pids of the commands running now

    async def request(self, python: str | None, allow_downtime: bool, dry_run: bool,
                      progress: Progress) -> UpgradeResult | UpgradePlanReply | Refusal:
        if self.upgrader is None:
            return Refusal("this daemon cannot upgrade")
        if dry_run:
            plan = await self._plan(python, allow_downtime)
            return UpgradePlanReply("rejected" if plan.errors else "plan", plan.errors, **plan.describe())
        if self.daemon.paused:
            return Refusal("synsup is paused: no upgrades until `synsup resume`")
        result: UpgradeResult = await self.daemon.operations.submit(
            "upgrade", lambda: self._upgrade(python, allow_downtime, progress))
        return result

    async def _plan(self, python: str | None, allow_downtime: bool) -> UpgradePlan:
        """Planned from the code the units run; no --python: finish a partial upgrade, or
        upgrade in place what the units run."""
        assert self.upgrader is not None and self.daemon.supervisor is not None
        running = [u.spec for u in self.daemon.supervisor.units.values()]
        partial = self.daemon.running.code.partial
        python = python or (partial.new.python if partial else main_code(running).python) or None
        current = dataclasses.replace(self.daemon.current, specs=running)
        return await asyncio.to_thread(self.upgrader, current, python, allow_downtime)

    async def _upgrade(self, python: str | None, allow_downtime: bool, progress: Progress) -> UpgradeResult:
        d = self.daemon
        d.lifecycle.move(Phase.UPGRADING)
        d.notifier.send(STATUS="upgrading")
        try:
            plan = await self._plan(python, allow_downtime)
            for line in plan.summary:
                await progress(line)
            return await self._execute(plan, progress)
        finally:
            d.settle()
            d.notifier.send(STATUS=d.status_line())

    async def _execute(self, plan: UpgradePlan, progress: Progress) -> UpgradeResult:
        if plan.errors:
            return self._record(plan, "rejected", error="; ".join(plan.errors), errors=plan.errors)
        for command in plan.commands:
            await progress(f"{command.what} ...")
            failure = await self._run_recorded(command)
            if failure:
                return self._record(plan, "failed", error=f"{command.what}: {failure}")
            await progress(f"{command.what}: done")
        sup, d = self.daemon.supervisor, self.daemon
        assert sup is not None and plan.loaded is not None
        before = {name: unit.spec for name, unit in sup.units.items()}
        snapshot, specs = d.running.candidate(plan.loaded, {})  # every unit on the new code
        try:
            await apply_actions(sup, plan.actions, specs, before if plan.rollback else {}, progress)
        except PartialReload as partial:
            self._halted(before, specs)
            back = "it runs the old code again" if plan.rollback else "it stays stopped"
            return self._record(plan, "partial", unit=partial.unit, error=partial.error, actions=partial.done,
                                note=f"{back}; the units not yet restarted kept the old code")
        d.reloads.applied(plan.loaded, snapshot, reloader=plan.reloader)
        d.running.upgraded(new := main_code(specs))
        moved = new.python != main_code(before.values()).python  # the unit file's --python must follow
        return self._record(plan, "upgraded", actions=[a.describe() for a in plan.actions],
                            python=new.python if moved else None)

    def _halted(self, before: dict[str, UnitSpec], specs: list[UnitSpec]) -> None:
        """Which units run the new code is kept (and shown) until `synsup upgrade` again or a roll back."""
        d, sup = self.daemon, self.daemon.supervisor
        assert sup is not None
        d.running.halted(main_code(before.values()), main_code(specs), (u.spec for u in sup.units.values()))
        d.running.prune(u.spec for u in sup.units.values())

    async def _run_recorded(self, command: Command) -> str:
        """Marked and recorded in units.json while it runs, so that a `synsup stop` after the
        daemon died finds it (it is no unit: never adopted, listed as `migration`)."""
        records, name, nonce = self.daemon.records, "migration", new_nonce()
        records.expect(name, nonce, self.daemon.supervisor)
        try:
            return await run_command(command, {VARIABLE: command_mark(self.daemon.token, name, nonce)}, self._spawned)
        finally:
            records.untrack(name, self.daemon.supervisor)
            REAPER.waited.difference_update(self._commands)
            self._commands.clear()

    def _spawned(self, pid: int) -> None:
        REAPER.waited.add(pid)  # asyncio waits for it: the reaper must not take its exit status
        self._commands.add(pid)
        self.daemon.records.track("migration", pid, self.daemon.supervisor)

    def _record(self, plan: UpgradePlan, result: str, **fields: Any) -> UpgradeResult:
        outcome = UpgradeResult(time.time(), result, plan.code_name, plan.from_version, plan.to_version,
                                plan.summary, **fields)
        self.last = outcome.record()
        (log.info if result == "upgraded" else log.error)("upgrade.done", **self.last)
        return outcome


async def run_command(command: Command, marker: dict[str, str] | None = None,
                      spawned: Callable[[int], None] | None = None) -> str:
    """Run it to the end (output kept); "" on exit 0, else why it failed with its last lines.
    `marker` goes into its environment and `spawned` hears its pid, so that a `synsup stop`
    after the daemon died finds it."""
    try:
        with REAPER.spawning():  # asyncio waits for it: the reaper must not take its exit status
            proc = await asyncio.create_subprocess_exec(*command.argv, stdin=asyncio.subprocess.DEVNULL,
                                                        env={**os.environ, **(marker or {})},
                                                        stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.STDOUT, start_new_session=True)
            REAPER.waited.add(proc.pid)
    except OSError as e:
        return f"cannot run {command.argv[0]}: {e.strerror or e}"
    try:
        return await _outcome(proc, command, spawned)
    finally:
        REAPER.waited.discard(proc.pid)


async def _outcome(proc: asyncio.subprocess.Process, command: Command,
                   spawned: Callable[[int], None] | None) -> str:
    if spawned is not None:
        spawned(proc.pid)
    try:
        async with asyncio.timeout(command.timeout):
            output, _ = await proc.communicate()
    except (TimeoutError, asyncio.CancelledError) as e:
        proc.kill()
        await proc.wait()
        if isinstance(e, asyncio.CancelledError):
            raise
        return f"did not finish within {command.timeout:g}s"
    if proc.returncode == 0:
        return ""
    tail = " | ".join(output.decode(errors="replace").strip().splitlines()[-OUTPUT_TAIL:])
    return f"exit code {proc.returncode}: {tail}"
