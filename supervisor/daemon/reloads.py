"""Reload requests (file changes, SIGHUP, `synsup reload`): queued as operations, merged,
checked, applied. `Reloads` owns the config generation and the last reload's result: whatever
makes a new config run (a reload, an upgrade, a cluster plan) says so through `Reloads.applied`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from ..plans import Action
from ..protocol import Refusal, ReloadOutcome, ReloadResult
from ..source import Loaded
from .config_watch import config_changes, files_read
from .operations import OperationView, Phase
from .plan_executor import PartialReload, apply_actions

if TYPE_CHECKING:
    from ..engine.unit import Unit
    from .config_snapshot import ConfigSnapshot

log = structlog.get_logger()


class _ClusterChange(Protocol):
    async def config_changed(self, new: Loaded) -> ReloadOutcome: ...


class _ReloadCounter(Protocol):
    def reload_done(self, outcome: ReloadOutcome) -> None: ...


class ReloadsView(OperationView, Protocol):
    """What Reloads uses of the daemon: an operation's view, its config (replaced when one is
    applied), the cluster a change goes through (--cluster), the telemetry that counts it."""

    current: Loaded

    @property
    def cluster(self) -> _ClusterChange | None: ...

    @property
    def telemetry(self) -> _ReloadCounter: ...


class Reloads:
    def __init__(self, daemon: ReloadsView, reloader: Callable[[], Loaded] | None,
                 planner: Callable[[Loaded, Loaded], list[Action]] | None, settle: float = 1.0) -> None:
        self.daemon = daemon
        self.reloader, self.planner = reloader, planner
        self.settle = settle  # a changed file must be unchanged this long before it is read
        self.last: dict[str, Any] | None = None  # the last reload's result, for status
        self.generation = 1  # of the accepted config the units run: one more each change applied
        self._watch_restart = asyncio.Event()
        self.missed = False  # a change came while paused
        self._read: tuple[tuple[str, bytes | int], ...] | None = None  # the files the last reload read (files_read)

    @property
    def rejected(self) -> list[str] | None:
        """The errors of the files on disk, while they are rejected."""
        rejection = self.daemon.running.rejected
        return rejection.errors if rejection is not None else None

    @property
    def enabled(self) -> bool:
        return self.reloader is not None and self.planner is not None

    def request(self) -> asyncio.Future | None:
        """Queue a reload (merged with one already waiting); None when it cannot be queued."""
        if not self.enabled:
            return None
        if self.daemon.paused:
            self.missed = True  # applied on `synsup resume`
            log.info("reload.deferred", reason="paused")
            return None
        try:
            future = self.daemon.operations.submit("reload", self._reload_once, merge=True)
        except Exception as e:  # stopping: a reload now would be pointless
            log.info("reload.refused", reason=str(e))
            return None
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved: no warning
        return future

    def resume(self) -> None:
        """`synsup resume`: the reload a change asked for during the pause is made now."""
        if self.missed:
            self.missed = False
            self.request()

    async def dry_run(self) -> ReloadOutcome | Refusal:
        """The plan the current files would produce, applied to nothing."""
        d = self.daemon
        if self.reloader is None or self.planner is None:
            return Refusal("this daemon cannot reload")
        new = await asyncio.to_thread(self.reloader)
        if new.errors:
            return ReloadOutcome(ReloadResult.REJECTED, errors=[f.format() for f in new.errors], dry_run=True)
        units = d.supervisor.units if d.supervisor is not None else {}
        actions = priced(self.planner(d.current, new), units)
        return ReloadOutcome(ReloadResult.PLAN, actions or ["no changes"], dry_run=True)

    async def request_and_wait(self) -> ReloadOutcome | Refusal:
        if not self.enabled:
            return ReloadOutcome(ReloadResult.REJECTED, errors=["this daemon cannot reload"])
        if self.daemon.paused:
            return Refusal("synsup is paused: no reloads until `synsup resume`")
        future = self.daemon.operations.submit("reload", self._reload_once, merge=True)
        outcome: ReloadOutcome = await future
        return outcome

    async def _reload_once(self) -> ReloadOutcome:
        d = self.daemon
        d.notifier.send(RELOADING=1, MONOTONIC_USEC=int(time.monotonic() * 1e6), STATUS="reloading")
        d.lifecycle.move(Phase.RELOADING)
        try:
            return await self._check_and_apply()
        finally:
            d.settle()
            d.notifier.send(READY=1, STATUS=d.status_line())

    async def _check_and_apply(self) -> ReloadOutcome:
        d = self.daemon
        assert self.reloader is not None and self.planner is not None and d.supervisor is not None
        new = await asyncio.to_thread(self._read_files, list(d.current.watch_paths))
        if new.errors:
            errors = [f.format() for f in new.errors]
            d.running.reject(errors)
            log.error("reload.rejected", errors=errors)
            return self._record(ReloadOutcome(ReloadResult.REJECTED, errors=errors))
        if d.cluster is not None:  # a change across nodes: planned by the leader, run phase by phase
            return self._record(await d.cluster.config_changed(new))
        actions = self.planner(d.current, new)
        described = [a.describe() for a in actions]
        log.info("reload.plan", actions=described or ["no changes"])
        running = {n: u.spec for n, u in d.supervisor.units.items()}
        last_good = d.running.last_good(running)
        snapshot, specs = d.running.candidate(new, running)
        try:
            await apply_actions(d.supervisor, actions, specs, last_good)
        except PartialReload as partial:
            d.running.prune(u.spec for u in d.supervisor.units.values())
            log.error("reload.partial", unit=partial.unit, error=partial.error, done=partial.done)
            return self._record(ReloadOutcome(ReloadResult.PARTIAL, partial.done, unit=partial.unit,
                                              error=partial.error, generation=self.generation))
        if set(new.watch_paths) != set(d.current.watch_paths):
            self._watch_restart.set()
        changed = bool(actions) or new.specs != d.current.specs
        self.applied(new, snapshot, changed)
        if not changed:  # e.g. `synsup reload` after the watcher applied the change already
            return ReloadOutcome(ReloadResult.APPLIED, [self._already_applied()], generation=self.generation)
        return self._record(ReloadOutcome(ReloadResult.APPLIED, described or ["no changes"],
                                          generation=self.generation))

    def _read_files(self, watched: list[str]) -> Loaded:
        """The reloader's load, and the watched files as read just before it: a change the
        watcher reports later that this load read already is not reloaded again."""
        self._read = files_read(watched)
        assert self.reloader is not None
        return self.reloader()

    def applied(self, new: Loaded, snapshot: ConfigSnapshot | None, changed: bool = True,
                reloader: Callable[[], Loaded] | None = None) -> None:
        """A new config runs now (a reload, an upgrade, a cluster plan): the daemon's current
        one, the last accepted copies, one generation more if anything changed; an upgrade
        brings the reloader of its new code."""
        d = self.daemon
        assert d.supervisor is not None
        d.current = new
        if reloader is not None:
            self.reloader = reloader
        d.running.applied(snapshot, (u.spec for u in d.supervisor.units.values()))
        if changed:
            self.generation += 1

    def _already_applied(self) -> str:
        last = self.last if self.last and self.last.get("result") == "applied" else None
        if last is None:
            return "no changes"
        return (f"no changes: already applied at {time.strftime('%H:%M:%S', time.localtime(last['at']))} "
                f"(generation {self.generation})")

    def _record(self, outcome: ReloadOutcome) -> ReloadOutcome:
        """The last reload, for status (`last_reload`) and telemetry."""
        fields = outcome.as_json()
        self.last = {"at": time.time(), **{k: fields[k] for k in ("result", "actions", "errors", "unit", "error")
                                           if k in fields}}
        self.daemon.telemetry.reload_done(outcome)
        return outcome

    # -- file watching
    async def watch(self) -> None:
        while True:
            self._watch_restart.clear()
            watching = asyncio.ensure_future(self._watch_paths(list(self.daemon.current.watch_paths)))
            restart = asyncio.ensure_future(self._watch_restart.wait())
            try:
                await asyncio.wait({watching, restart}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                watching.cancel()
                restart.cancel()
            if watching.done() and not watching.cancelled() and watching.exception() is not None:
                log.error("reload.watch_failed", error=str(watching.exception()))
                await asyncio.sleep(1.0)  # try again: the paths may be back

    async def _watch_paths(self, paths: list[str]) -> None:
        async for changed in config_changes(paths, self.settle):
            if self._read is not None and await asyncio.to_thread(files_read, paths) == self._read:
                # e.g. `synsup reload` right after the edit: that reload read these files, and
                # reading them again would retry a change just rejected or rolled back
                log.info("reload.files_already_read", files=changed)
                continue
            log.info("reload.files_changed", files=changed)
            self.request()


def priced(actions: list[Action], units: Mapping[str, Unit]) -> list[str]:
    """Each action with what it costs: which units go down and for about how long (their last
    start, spawn to ready), or that they stay down until a later action starts them."""
    out = []
    for index, action in enumerate(actions):
        later = {n for a in actions[index + 1:] if a.verb in ("start", "restart") for n in a.units}
        out.append(f"{action.describe()} [{_cost(action, units, later)}]")
    return out


def _cost(action: Action, units: Mapping[str, Unit], started_later: set[str]) -> str:
    if action.verb == "signal":
        return "no restart"
    if action.verb == "stop":
        kept = [n for n in action.units if n in started_later]
        return f"down until started again below: {', '.join(kept)}" if kept else "stopped for good"
    known = [s for n in action.units if (u := units.get(n)) is not None and (s := u.last_start_seconds) is not None]
    down = ", ".join(action.units)
    return f"{down} down about {max(known):.0f} s (their last start)" if known else f"{down} down until ready"
