"""Callbacks due at about the same time, on one timer of the loop per 10 ms: the liveness checks
of hundreds of units (each check's timeout, each unit's next check) without a timer each.

Why: a settled deployment of 500 HTTP-probed units set two timers per check, 100 a second: a
timeout, cancelled a millisecond later but kept in the loop's heap until it fell due, and the
next check's. Each one a TimerHandle pushed through the heap with Python-level comparisons: a
tenth of the daemon's CPU. The checks wake together (`HealthChecks._coalesced`), so their
timers fall due together, and a group of them is one entry of a dict."""

from __future__ import annotations

import asyncio
import math
import weakref
from collections.abc import Callable

GRAIN = 0.01  # seconds: a callback runs up to this much after its time, with the others of its group

_OF_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TimerGroups] = weakref.WeakKeyDictionary()


class TimerGroups:
    __slots__ = ("loop", "_groups", "__weakref__")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._groups: dict[int, dict[object, Callable[[], None]]] = {}

    def at(self, when: float, key: object, callback: Callable[[], None]) -> int:
        """`callback` at loop time `when` (at most GRAIN later), under `key`; its tick, for `cancel`."""
        tick = math.ceil(when / GRAIN)
        group = self._groups.get(tick)
        if group is None:
            group = self._groups[tick] = {}
            self.loop.call_at(tick * GRAIN, self._fire, tick)
        group[key] = callback
        return tick

    def cancel(self, tick: int, key: object) -> None:
        group = self._groups.get(tick)
        if group is not None:
            group.pop(key, None)

    def pending(self) -> int:
        return sum(len(group) for group in self._groups.values())

    def _fire(self, tick: int) -> None:
        """The group's callbacks in the order they were added; one cancelled by another of the
        group (or added to it) meanwhile is left out (or run) as if each had its own timer."""
        group = self._groups.get(tick)
        try:
            while group:
                callback = group.pop(next(iter(group)))
                try:
                    callback()
                except Exception as e:  # one callback's bug stops none of the others
                    self.loop.call_exception_handler({"message": f"exception in {callback!r}", "exception": e})
        finally:
            if self._groups.get(tick) is group:
                del self._groups[tick]


def timer_groups() -> TimerGroups:
    """The running loop's groups (a test runs many loops, one after another)."""
    loop = asyncio.get_running_loop()
    groups = _OF_LOOP.get(loop)
    if groups is None:
        groups = _OF_LOOP[loop] = TimerGroups(loop)
    return groups
