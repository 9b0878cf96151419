"""What a source asks the daemon to do: a reload plan (ordered stop/start/restart/signal actions)
and an upgrade plan (commands to run first, e.g. a schema migration, then restart actions with
readiness gating, then the new specs become the current ones)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .source import Loaded


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


@dataclass(frozen=True)
class Command:
    what: str  # one line for progress and errors ("migrate the database schema with Synapse 1.163.2")
    argv: tuple[str, ...]
    timeout: float = 3600.0


@dataclass
class UpgradePlan:
    code_name: str = ""  # what is upgraded, for messages ("Synapse")
    from_version: str = ""
    to_version: str = ""
    summary: list[str] = field(default_factory=list)  # versions, migration yes/no, why
    errors: list[str] = field(default_factory=list)  # any: nothing is changed
    commands: list[Command] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    rollback: bool = True  # a unit that fails goes back to the spec it ran (False: its old code cannot run)
    loaded: Loaded | None = None  # what the daemon runs once every action is done
    reloader: Callable[[], Loaded] | None = None  # reloads from then on load with the new code

    def describe(self) -> dict[str, Any]:
        return {"code_name": self.code_name, "from_version": self.from_version, "to_version": self.to_version,
                "summary": self.summary, "commands": [c.what for c in self.commands],
                "actions": [a.describe() for a in self.actions]}
