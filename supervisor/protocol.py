"""The control protocol, one JSON object a line each way: the requests (one dataclass, validated
before anything acts on them: known commands, known fields of the right types, unit names
matched exactly), refusals, and the outcome of a reload (one enum)."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any


class RequestError(Exception):
    pass


# command -> the fields it takes (besides "cmd")
FIELDS: dict[str, frozenset[str]] = {
    "status": frozenset({"units"}),
    "watch": frozenset(),
    "stop": frozenset({"units", "force", "node"}),
    "start": frozenset({"units", "node"}),
    "restart": frozenset({"units", "rolling", "node"}),
    "reload": frozenset({"dry_run"}),
    "pause": frozenset({"node"}),
    "reopen_logs": frozenset(),
    "resume": frozenset({"node"}),
    "upgrade": frozenset({"python", "dry_run", "allow_downtime"}),
    "reexec": frozenset({"trial_timeout"}),
}


def validate(request: dict[str, Any], unit_names: list[str]) -> str:
    """The command of a valid request; RequestError saying what is wrong otherwise."""
    command = request.get("cmd")
    if not isinstance(command, str) or command not in FIELDS:
        raise RequestError(f"unknown request {command!r}; known: {', '.join(FIELDS)}")
    unknown = sorted(set(request) - FIELDS[command] - {"cmd"})
    if unknown:
        raise RequestError(f"{command}: unknown field(s) {', '.join(unknown)}")
    for flag in ("force", "dry_run", "allow_downtime", "rolling"):
        if not isinstance(request.get(flag, False), bool):
            raise RequestError(f"{command}: `{flag}` must be true or false")
    node = request.get("node")
    if node is not None and not isinstance(node, str):
        raise RequestError(f"{command}: `node` must be a node's name")
    python = request.get("python")
    if python is not None and (not isinstance(python, str) or not python.startswith("/")):
        raise RequestError(f"{command}: `python` must be an absolute path to an interpreter")
    timeout = request.get("trial_timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        raise RequestError(f"{command}: `trial_timeout` must be a number of seconds above 0")
    units = request.get("units")
    if units is not None:
        if not isinstance(units, list) or not all(isinstance(u, str) for u in units):
            raise RequestError(f"{command}: `units` must be a list of unit names")
        missing = [u for u in units if u not in unit_names]
        if missing:
            raise RequestError(f"no unit named {', '.join(missing)}; units: {', '.join(unit_names)}")
    return command


@dataclass(frozen=True)
class Request:
    """What a client asks; fields a command does not take keep their defaults."""

    cmd: str
    units: tuple[str, ...] = ()
    force: bool = False
    dry_run: bool = False
    python: str | None = None
    allow_downtime: bool = False
    rolling: bool = False
    trial_timeout: float | None = None  # reexec: seconds the new image's trial may take
    node: str | None = None  # --node N (--cluster): only on that node

    def as_json(self) -> dict[str, Any]:
        """The request line: `cmd` and every field that is not its default."""
        out: dict[str, Any] = {"cmd": self.cmd}
        for f in dataclasses.fields(self)[1:]:
            value = getattr(self, f.name)
            if value != f.default:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


def parse_request(raw: Any, unit_names: list[str]) -> Request:
    """A request line, validated (RequestError saying what is wrong otherwise)."""
    if not isinstance(raw, dict):
        raise RequestError("a request is a JSON object")
    command = validate(raw, unit_names)
    return Request(command, tuple(raw.get("units") or ()), raw.get("force", False), raw.get("dry_run", False),
                   raw.get("python"), raw.get("allow_downtime", False), raw.get("rolling", False),
                   raw.get("trial_timeout"), raw.get("node"))


def refusal(error: str) -> dict[str, Any]:
    """The reply to a request the daemon will not carry out."""
    return {"ok": False, "error": error}


class ReloadResult(enum.Enum):
    PLAN = "plan"  # a dry run's plan
    REJECTED = "rejected"  # the files did not check out: nothing changed
    PARTIAL = "partial"  # a unit did not become ready: the plan halted there
    APPLIED = "applied"


@dataclass(frozen=True)
class ReloadOutcome:
    result: ReloadResult
    actions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    unit: str | None = None  # PARTIAL: where the plan halted, and why
    error: str | None = None
    generation: int | None = None
    dry_run: bool = False

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": True, "result": self.result.value, "applied": self._applied(),
                               "actions": self.actions}
        for name, value in (("errors", self.errors), ("unit", self.unit), ("error", self.error),
                            ("config_generation", self.generation), ("dry_run", self.dry_run)):
            if value:
                out[name] = value
        return out

    def _applied(self) -> bool | str:
        """The older field beside `result`, kept for clients that read it."""
        if self.result is ReloadResult.PARTIAL:
            return "partial"
        return self.result is ReloadResult.APPLIED
