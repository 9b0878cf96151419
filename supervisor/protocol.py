"""Control requests, validated before anything acts on them: known commands, known fields of
the right types, unit names matched exactly."""

from __future__ import annotations

from typing import Any


class RequestError(Exception):
    pass


# command -> the fields it takes (besides "cmd")
FIELDS: dict[str, frozenset[str]] = {
    "status": frozenset({"units"}),
    "watch": frozenset(),
    "stop": frozenset({"units", "force"}),
    "start": frozenset({"units"}),
    "restart": frozenset({"units"}),
    "reload": frozenset({"dry_run"}),
    "pause": frozenset(),
    "reopen_logs": frozenset(),
    "resume": frozenset(),
    "upgrade": frozenset({"python", "dry_run", "allow_downtime"}),
    "reexec": frozenset(),
}


def validate(request: dict[str, Any], unit_names: list[str]) -> str:
    """The command of a valid request; RequestError saying what is wrong otherwise."""
    command = request.get("cmd")
    if not isinstance(command, str) or command not in FIELDS:
        raise RequestError(f"unknown request {command!r}; known: {', '.join(FIELDS)}")
    unknown = sorted(set(request) - FIELDS[command] - {"cmd"})
    if unknown:
        raise RequestError(f"{command}: unknown field(s) {', '.join(unknown)}")
    for flag in ("force", "dry_run", "allow_downtime"):
        if not isinstance(request.get(flag, False), bool):
            raise RequestError(f"{command}: `{flag}` must be true or false")
    python = request.get("python")
    if python is not None and (not isinstance(python, str) or not python.startswith("/")):
        raise RequestError(f"{command}: `python` must be an absolute path to an interpreter")
    units = request.get("units")
    if units is not None:
        if not isinstance(units, list) or not all(isinstance(u, str) for u in units):
            raise RequestError(f"{command}: `units` must be a list of unit names")
        missing = [u for u in units if u not in unit_names]
        if missing:
            raise RequestError(f"no unit named {', '.join(missing)}; units: {', '.join(unit_names)}")
    return command
