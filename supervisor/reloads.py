"""Reload requests (file changes, SIGHUP, `synsup reload`): queued, merged, checked, applied."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from .actions import Action
from .executor import apply_actions
from .source import Loaded
from .watch import config_changes

if TYPE_CHECKING:
    from .daemon import Daemon
    from .engine import Supervisor

log = structlog.get_logger()


class Reloads:
    def __init__(self, daemon: Daemon, reloader: Callable[[], Loaded] | None,
                 planner: Callable[[Loaded, Loaded], list[Action]] | None) -> None:
        self.daemon = daemon
        self.reloader, self.planner = reloader, planner
        self._requested = asyncio.Event()
        self._waiters: list[asyncio.Future] = []
        self._watch_restart = asyncio.Event()

    def tasks(self, group: asyncio.TaskGroup, stop: asyncio.Event) -> list[asyncio.Task]:
        if self.reloader is None or self.planner is None:
            return []
        return [group.create_task(self._loop()), group.create_task(self._watch(stop))]

    def request(self) -> None:
        self._requested.set()

    async def request_and_wait(self) -> dict[str, Any]:
        if self.reloader is None:
            return {"ok": True, "applied": False, "errors": ["this daemon cannot reload"]}
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self.request()
        return await waiter

    async def _loop(self) -> None:
        while True:
            await self._requested.wait()
            self._requested.clear()
            waiters, self._waiters = self._waiters, []  # requests arriving from now on wait for the next round
            result = await self._reload_once()
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(result)

    async def _reload_once(self) -> dict[str, Any]:
        d = self.daemon
        d.notifier.send(RELOADING=1, MONOTONIC_USEC=int(time.monotonic() * 1e6), STATUS="reloading")
        sup = d.supervisor
        assert sup is not None
        previous_state = sup.state
        sup.state = "reloading"
        try:
            return await self._check_and_apply(sup)
        finally:
            sup.state = previous_state if previous_state != "reloading" else "running"
            d.notifier.send(READY=1, STATUS=d.status_line())

    async def _check_and_apply(self, sup: Supervisor) -> dict[str, Any]:
        d = self.daemon
        assert self.reloader is not None and self.planner is not None
        new = await asyncio.to_thread(self.reloader)
        if new.errors:
            errors = [f.format() for f in new.errors]
            d.extra_status["reload_error"] = errors
            log.error("reload.rejected", errors=errors)
            return {"ok": True, "applied": False, "errors": errors}
        actions = self.planner(d.current, new)
        d.extra_status["reload_error"] = None
        log.info("reload.plan", actions=[a.describe() for a in actions] or ["no changes"])
        await apply_actions(sup, actions, new.specs)
        if set(new.watch_paths) != set(d.current.watch_paths):
            self._watch_restart.set()
        d.current = new
        d.config_generation += 1
        described = [a.describe() for a in actions]
        d.extra_status["last_reload"] = {"at": time.time(), "actions": described}
        return {"ok": True, "applied": True, "actions": described or ["no changes"],
                "config_generation": d.config_generation}

    async def _watch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._watch_restart.clear()
            watching = asyncio.ensure_future(self._watch_paths(list(self.daemon.current.watch_paths)))
            restart = asyncio.ensure_future(self._watch_restart.wait())
            try:
                await asyncio.wait({watching, restart}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                watching.cancel()
                restart.cancel()
            if watching.done() and not watching.cancelled():
                watching.result()
                await self._watch_restart.wait()

    async def _watch_paths(self, paths: list[str]) -> None:
        async for changed in config_changes(paths, asyncio.Event()):
            log.info("reload.files_changed", files=changed)
            self.request()
