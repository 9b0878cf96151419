"""A unit whose process synsup does not run here: a service someone else runs, probed (ready
when it answers, never started or stopped), or a stand-in for a unit another node's daemon
runs, ready while that daemon reports it so (`spec.reported`, --cluster). A part of Unit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from .flag import Flag
from .health import HealthChecks
from .unit_state import UnitState

S = UnitState


class Elsewhere(HealthChecks):
    """Mixed into Unit: the attributes below are the Unit's (its __slots__)."""

    __slots__ = ()

    _reported: bool
    _report_changed: Flag

    def set_state(self, new: UnitState, error: str | None = None, **fields: object) -> None:
        raise NotImplementedError

    async def _race(self, work: Awaitable[object], exited: asyncio.Future[int | None] | None = None,
                    timeout: float | None = None) -> str:
        raise NotImplementedError

    def report(self, ready: bool) -> None:
        """A unit with `spec.reported` (run elsewhere, e.g. by another node's daemon) is ready or not."""
        if ready != self._reported:
            self._reported = ready
            self._report_changed.set()
            self._report_changed = Flag()

    async def _watch_external(self) -> float | None:
        """A service someone else runs: ready when it answers; never started or stopped."""
        outcome = await self._race(self._until_healthy(), None, self.spec.start_timeout)
        if outcome != "done":
            if outcome == "timeout":
                self.error = f"not answering within {self.spec.start_timeout:g}s ({self.health})"
            return None
        self.set_state(S.READY)
        while await self._race(self._liveness()) == "done":
            self.set_state(S.UNHEALTHY)
            if await self._race(self._until_healthy()) == "stop":
                break
            self.set_state(S.READY)
        return None

    async def _follow_reports(self) -> None:
        """Ready while reported ready, unhealthy while not; no probe and no start timeout (its own
        daemon judges it), until stopped."""
        while await self._race(self._until_reported(True)) == "done":
            self.set_state(S.READY)
            if await self._race(self._until_reported(False)) != "done":
                break
            self.set_state(S.UNHEALTHY)

    async def _until_reported(self, ready: bool) -> None:
        while self._reported != ready:
            await self._report_changed.wait()
