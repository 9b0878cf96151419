"""Reload plans as the engine executes them: ordered stop/start/restart/signal actions."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Action:
    """stop: these units together, wait until all exited; start: these together (new
    config), wait until all ready; restart: one unit, stop then start, wait until ready;
    signal: send SIGHUP, no restart."""

    verb: str
    units: tuple[str, ...]
    reason: str

    def describe(self) -> str:
        return f"{self.verb} {', '.join(self.units)}: {self.reason}"
