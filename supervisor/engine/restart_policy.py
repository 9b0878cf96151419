"""When to restart a unit that exited, and when to give up on it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)  # one per unit: no __dict__
class RestartPolicy:
    stable_after: float = 60.0  # ready this long: restart at once
    reset_after: float = 600.0  # ready this long: backoff starts again from the base
    base: float = 1.0
    cap: float = 60.0
    max_failed_starts: int = 5
    failed_starts: int = 0  # consecutive starts that never became ready
    level: int = 0  # backoff exponent

    def reset(self) -> None:
        self.failed_starts = 0
        self.level = 0

    def delay_after_exit(self, ready_for: float | None) -> float | None:
        """Seconds to wait before the next start, or None to give up (crash loop). A unit that
        crashes within `stable_after` of becoming ready counts like one that never did
        (flapping), so it ends `failed` too instead of backing off forever."""
        if ready_for is not None and self.restarts_at_once(ready_for):
            self.failed_starts = 0
            if ready_for >= self.reset_after:
                self.level = 0
            return 0.0
        self.failed_starts += 1
        if self.failed_starts >= self.max_failed_starts:
            return None
        return self._next_delay()

    def restarts_at_once(self, ready_for: float) -> bool:
        """Whether an exit after `ready_for` seconds ready is restarted without a delay (no change)."""
        return ready_for >= self.stable_after

    def _next_delay(self) -> float:
        delay = float(min(self.base * (2 ** self.level), self.cap))
        self.level += 1
        return delay
