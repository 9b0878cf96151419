"""Which config and which code each unit runs with: the one owner.

A unit's spec reads its config files from copies of the last accepted config in the state dir
(config_snapshot), so a crash restart after an edit synsup rejected starts from what synsup
accepted, never from the files on disk. Reloads keep each unit on the code it runs (a partial
upgrade is not undone by a reload); upgrades record the code they installed (unit_code). The
daemon's start, crash restarts (the spec given to the unit), reloads, upgrades and `status`
all go through this object."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from ..source import Loaded
from ..spec import UnitSpec
from ..statedir import StateDir
from .config_snapshot import ConfigSnapshot, prune
from .unit_code import CodeRecord, UnitCode

log = structlog.get_logger()


@dataclass(frozen=True)
class Rejection:
    """The files on disk were rejected: the units keep running the last accepted config."""

    at: float
    errors: list[str]


class RunningConfig:
    def __init__(self, state: StateDir) -> None:
        self.state = state
        self.accepted: ConfigSnapshot | None = None
        self.rejected: Rejection | None = None
        self.code = CodeRecord.read(state)
        self._serial = 0

    # -- config
    def first_specs(self, loaded: Loaded) -> list[UnitSpec]:
        """For the daemon's start: the loaded config, copied; each unit on the code the record says.
        An earlier daemon's copies are kept until adoption has compared them (`prune`)."""
        self.accepted = self._copy(loaded)
        specs = self._specs_of(self.accepted, loaded)
        return [self._recorded_code(s) for s in specs]

    def candidate(self, loaded: Loaded, running: Mapping[str, UnitSpec]) -> tuple[ConfigSnapshot | None, list[UnitSpec]]:
        """An accepted config about to be applied: its copies, and the specs reading them, each
        unit on the code it runs now when that is another interpreter (a partial upgrade)."""
        self.rejected = None  # the files on disk passed the check
        snapshot = self._copy(loaded)
        return snapshot, [keep_code(s, running.get(s.name)) for s in self._specs_of(snapshot, loaded)]

    def applied(self, snapshot: ConfigSnapshot | None, running: Iterable[UnitSpec]) -> None:
        """The candidate runs now: it is the last accepted config (Reloads.applied counts it)."""
        if snapshot is not None:
            self.accepted = snapshot
        self.prune(running)

    def reject(self, errors: list[str]) -> None:
        self.rejected = Rejection(time.time(), errors)

    def last_good(self, running: Mapping[str, UnitSpec]) -> dict[str, UnitSpec]:
        """Each unit's spec in the last accepted config, on the code it runs now (for a rollback)."""
        if self.accepted is None:
            return {}
        return {n: keep_code(s, running.get(n)) for n, s in self.accepted.specs().items()}

    def prune(self, running: Iterable[UnitSpec]) -> None:
        """Forget the copies no unit reads any more (the last accepted ones are kept)."""
        keep = [self.accepted.directory] if self.accepted is not None else []
        prune(self.state.config_dir, running, keep)

    def _copy(self, loaded: Loaded) -> ConfigSnapshot | None:
        # past every copy an earlier daemon left: units it started (adopted now) may read them
        self._serial = max(self._serial, _highest_serial(self.state.config_dir)) + 1
        try:
            return ConfigSnapshot.take(self.state.config_dir, self._serial, loaded)
        except OSError as e:  # the units read the files on disk then, as before
            log.warning("config.snapshot_failed", error=str(e))
            return None

    @staticmethod
    def _specs_of(snapshot: ConfigSnapshot | None, loaded: Loaded) -> list[UnitSpec]:
        if snapshot is None:
            return list(loaded.specs)
        copied = snapshot.specs()
        return [copied[s.name] for s in loaded.specs]

    # -- code
    def _recorded_code(self, spec: UnitSpec) -> UnitSpec:
        return self.code.put_on(spec)

    def upgraded(self, code: UnitCode) -> None:
        self.code.upgraded(code)
        self._write_code()

    def halted(self, old: UnitCode, new: UnitCode, running: Iterable[UnitSpec]) -> None:
        """An upgrade stopped part way: remember which units run the new code."""
        self.code.halted(old, new, [s.name for s in running if UnitCode.runs_code(s) and UnitCode.of(s) == new])
        self._write_code()

    def _write_code(self) -> None:
        try:
            self.code.write(self.state)
        except OSError as e:
            log.error("config.code_record_failed", error=str(e))

    # -- status
    def status(self, generation: int) -> dict[str, Any]:
        """`generation`: of the config the units run (Reloads owns it)."""
        on_disk = None
        if self.rejected is not None:
            on_disk = {"state": "rejected", "at": self.rejected.at, "errors": self.rejected.errors,
                       "units_run_generation": generation}
        partial = self.code.partial
        return {"config_generation": generation, "config_on_disk": on_disk,
                "partial_upgrade": partial.as_json() if partial else None,
                "installed_code": self.code.installed.as_json() if self.code.installed else None}

    def unit_fields(self, spec: UnitSpec) -> dict[str, Any]:
        """`python` (None for a unit synsup runs no interpreter for) and the config files it reads."""
        prefix = self.state.config_dir.rstrip("/") + "/"
        return {"python": spec.argv[0] if spec.argv and UnitCode.runs_code(spec) else None,
                "config_files": [a for a in (spec.argv or ())[1:] if a.startswith(prefix)]}


def keep_code(spec: UnitSpec, running: UnitSpec | None) -> UnitSpec:
    """`spec`, on the code `running` runs when that is another interpreter."""
    if running is None or not UnitCode.runs_code(running) or not UnitCode.runs_code(spec):
        return spec
    code = UnitCode.of(running)
    return spec if code.python == UnitCode.of(spec).python else code.put_on(spec)


def _highest_serial(config_dir: str) -> int:
    try:
        return max((int(n) for n in os.listdir(config_dir) if n.isdigit()), default=0)
    except OSError:
        return 0
