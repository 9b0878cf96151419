"""Which code a unit runs (its interpreter and the application's version), and what the state
dir remembers of upgrades: the code the last upgrade installed, and a partial upgrade (some
units on the new code) until the admin finishes it or rolls it back. Kept in code.json, so a
daemon restart and the next `synsup start` know it too."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..spec import UnitSpec
from ..statedir import StateDir


@dataclass(frozen=True)
class UnitCode:
    python: str
    version: str = ""
    file: str = ""  # UnitSpec.code_file
    version_glob: str = ""  # UnitSpec.code_version_glob

    @staticmethod
    def runs_code(spec: UnitSpec) -> bool:
        """A unit whose interpreter synsup chooses (`--python`): not Redis, not an external one."""
        return bool(spec.argv) and bool(spec.code_name)

    @classmethod
    def of(cls, spec: UnitSpec) -> UnitCode:
        return cls((spec.argv or ("",))[0], spec.version, spec.code_file, spec.code_version_glob)

    def put_on(self, spec: UnitSpec) -> UnitSpec:
        if not self.runs_code(spec):
            return spec
        return dataclasses.replace(spec, argv=(self.python, *(spec.argv or ())[1:]), version=self.version,
                                   code_file=self.file, code_version_glob=self.version_glob)

    def as_json(self) -> dict[str, str]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> UnitCode | None:
        if not isinstance(data, dict) or not isinstance(data.get("python"), str):
            return None
        return cls(**{f.name: str(data.get(f.name) or "") for f in dataclasses.fields(cls)})


def main_code(specs: Iterable[UnitSpec]) -> UnitCode:
    """The code of the first unit that runs code (lowest step: the application's main process)."""
    code = sorted((s for s in specs if UnitCode.runs_code(s)), key=lambda s: s.step)
    return UnitCode.of(code[0]) if code else UnitCode("")


@dataclass
class PartialUpgrade:
    """An upgrade that halted: `units` run `new`, the others `old`."""

    old: UnitCode
    new: UnitCode
    units: list[str]
    at: float = field(default_factory=time.time)

    def as_json(self) -> dict[str, Any]:
        return {"old": self.old.as_json(), "new": self.new.as_json(), "units": self.units, "at": self.at}

    @classmethod
    def from_json(cls, data: Any) -> PartialUpgrade | None:
        if not isinstance(data, dict):
            return None
        old, new = UnitCode.from_json(data.get("old")), UnitCode.from_json(data.get("new"))
        units = data.get("units")
        if old is None or new is None or not isinstance(units, list):
            return None
        return cls(old, new, [str(u) for u in units], float(data.get("at") or 0))


@dataclass
class CodeRecord:
    """code.json: {"installed": UnitCode + "at", "partial": PartialUpgrade or null}."""

    installed: UnitCode | None = None
    installed_at: float | None = None
    partial: PartialUpgrade | None = None

    @classmethod
    def read(cls, state: StateDir) -> CodeRecord:
        data = state.read_json(state.code_file)
        if not isinstance(data, dict):
            return cls()
        installed = data.get("installed")
        at = installed.get("at") if isinstance(installed, dict) else None
        return cls(UnitCode.from_json(installed), float(at) if isinstance(at, (int, float)) else None,
                   PartialUpgrade.from_json(data.get("partial")))

    def write(self, state: StateDir) -> None:
        installed = {**self.installed.as_json(), "at": self.installed_at} if self.installed else None
        state.write_json(state.code_file, {"installed": installed,
                                           "partial": self.partial.as_json() if self.partial else None})

    def put_on(self, spec: UnitSpec) -> UnitSpec:
        """The spec on the code it runs: a unit a partial upgrade moved runs the new code."""
        if self.partial is None or spec.name not in self.partial.units:
            return spec
        return self.partial.new.put_on(spec)

    def upgraded(self, code: UnitCode) -> None:
        self.installed, self.installed_at, self.partial = code, time.time(), None

    def halted(self, old: UnitCode, new: UnitCode, units: Iterable[str]) -> None:
        if self.partial is not None and self.partial.new == new:
            old = self.partial.old  # finishing it halted again: the old code is still the one before
        self.partial = PartialUpgrade(old, new, sorted(units))
