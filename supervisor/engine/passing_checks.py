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


class PassingChecks:
    __slots__ = ("prober", "timeout", "delay", "passed", "verdict", "_timer", "_check")

    def __init__(self, prober: Prober, timeout: float, delay: Callable[[], float],
                 passed: Callable[[float], None]) -> None:
        """Checks every `delay()` seconds; `passed(seconds)` after each one that passed."""
        self.prober, self.timeout, self.delay, self.passed = prober, timeout, delay, passed
        loop = asyncio.get_running_loop()
        self.verdict: asyncio.Future[str | None] = loop.create_future()
        self.verdict.add_done_callback(self._abandoned)
        self._check: SettledCheck | None = None
        self._timer: asyncio.TimerHandle | None = loop.call_later(delay(), self._probe)

    def _probe(self) -> None:
        self._timer = None
        check = self.prober.start_settled(self.timeout)
        if check is None:
            self.verdict.set_result(None)  # the unit's task checks this one
            return
        self._check = check
        check.verdict.add_done_callback(self._checked)

    def _checked(self, verdict: asyncio.Future[str | None]) -> None:
        self._check = None
        if verdict.cancelled() or self.verdict.done():
            return
        why = verdict.result()
        if why is not None:
            self.verdict.set_result(why)
            return
        self.passed(self.prober.last_seconds)
        self._timer = asyncio.get_running_loop().call_later(self.delay(), self._probe)

    def _abandoned(self, verdict: asyncio.Future[str | None]) -> None:
        """The unit's task stopped waiting (the unit stops): no timer, no connection left."""
        if not verdict.cancelled():
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._check is not None:
            self._check.verdict.cancel()
            self._check = None
