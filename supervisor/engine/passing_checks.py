"""A ready unit's liveness checks while they pass, run on the loop's callbacks: a timer, the
settled check (`Prober.start_settled`), the next timer. The unit's task waits on one future
and wakes only for a check that did not pass (its reason) or one that needs a coroutine (None:
a fresh connection, TLS, the listeners not yet confirmed as the process's own); it checks that
one itself and counts failures as before.

Why: with 500 HTTP-probed units, 50 checks a second each woke the unit's task twice (the sleep,
the verdict) through four coroutine layers, with a future and a timer each time; that was
about half of the daemon's CPU in a settled deployment."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .probes import Prober, SettledCheck
from .timer_groups import timer_groups


class PassingChecks:
    __slots__ = ("prober", "timeout", "delay", "passed", "verdict", "_groups", "_next", "_check")

    def __init__(self, prober: Prober, timeout: float, delay: Callable[[], float],
                 passed: Callable[[float], None]) -> None:
        """Checks every `delay()` seconds; `passed(seconds)` after each one that passed."""
        self.prober, self.timeout, self.delay, self.passed = prober, timeout, delay, passed
        loop = asyncio.get_running_loop()
        self.verdict: asyncio.Future[str | None] = loop.create_future()
        self.verdict.add_done_callback(self._abandoned)
        self._check: SettledCheck | None = None
        self._groups = timer_groups()  # the loop's: one lookup per unit, not per check
        self._next: int | None = self._groups.at(loop.time() + delay(), self, self._probe)  # its tick

    def _probe(self) -> None:
        self._next = None
        check = self.prober.start_settled(self.timeout, self._checked)
        if check is None:
            self.verdict.set_result(None)  # the unit's task checks this one
            return
        self._check = check

    def _checked(self, why: str | None) -> None:
        """The check's verdict, told from the loop's callback that read the reply (or its timer)."""
        self._check = None
        if self.verdict.done():
            return
        if why is not None:
            self.verdict.set_result(why)
            return
        self.passed(self.prober.last_seconds)
        self._next = self._groups.at(self._groups.loop.time() + self.delay(), self, self._probe)

    def _abandoned(self, verdict: asyncio.Future[str | None]) -> None:
        """The unit's task stopped waiting (the unit stops): no timer, no connection left."""
        if not verdict.cancelled():
            return
        if self._next is not None:
            self._groups.cancel(self._next, self)
            self._next = None
        if self._check is not None:
            self._check.abandon()
            self._check = None
