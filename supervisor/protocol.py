"""The control protocol, one JSON object a line each way: the requests (one dataclass, validated
before anything acts on them: known commands, known fields of the right types, unit names
matched exactly), and the replies (dataclasses, each with its line: a refusal, the status, an
operation's, a reload's outcome (one enum), an upgrade's progress and result, ...)."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

R = TypeVar("R")


class RequestError(Exception):
    pass


# command -> the fields it takes (besides "cmd")
FIELDS: dict[str, frozenset[str]] = {
    "status": frozenset({"units"}),
    "watch": frozenset(),
    "stop": frozenset({"units", "force", "node", "local"}),
    "start": frozenset({"units", "node"}),
    "restart": frozenset({"units", "rolling", "node"}),
    "reload": frozenset({"dry_run"}),
    "pause": frozenset({"node"}),
    "reopen_logs": frozenset(),
    "resume": frozenset({"node"}),
    "upgrade": frozenset({"python", "dry_run", "allow_downtime", "node"}),
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
    for flag in ("force", "dry_run", "allow_downtime", "rolling", "local"):
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
    local: bool = False  # stop --local (--cluster): this node only (systemd's ExecStop), not the cluster

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
                   raw.get("trial_timeout"), raw.get("node"), raw.get("local", False))


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

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ReloadOutcome:
        return cls(ReloadResult(raw.get("result", "rejected")), list(raw.get("actions") or []),
                   list(raw.get("errors") or []), raw.get("unit"), raw.get("error"),
                   raw.get("config_generation"), bool(raw.get("dry_run")))

    def _applied(self) -> bool | str:
        """The older field beside `result`, kept for clients that read it."""
        if self.result is ReloadResult.PARTIAL:
            return "partial"
        return self.result is ReloadResult.APPLIED


# -- replies: what the daemon answers. `as_json()` is the line on the wire (its keys and their
# order are the protocol: `status --json` prints them); `read_reply` turns a line back into one.

def _json_of(reply: Any) -> dict[str, Any]:
    return {f.name: getattr(reply, f.name) for f in dataclasses.fields(reply)}


def _read(cls: type[R], raw: Mapping[str, Any]) -> R:
    """`cls` from a reply line's object; a missing key takes the field's default (else None)."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in raw:
            values[f.name] = raw[f.name]
        elif f.default_factory is not dataclasses.MISSING:
            values[f.name] = f.default_factory()
        else:
            values[f.name] = None if f.default is dataclasses.MISSING else f.default
    return cls(**values)


@dataclass(frozen=True)
class Refusal:
    """The reply to a request the daemon will not carry out."""

    error: str

    def as_json(self) -> dict[str, Any]:
        return {"ok": False, "error": self.error}


@dataclass(frozen=True)
class UnitStatus:
    """One unit as `status` and `watch` report it."""

    name: str
    kind: str = "process"
    app: str = ""
    step: int = 0
    state: str = ""
    pid: int | None = None
    restarts: int = 0
    since: float | None = None
    uptime: float | None = None  # seconds since its process started
    group: str | None = None
    health: str | None = None
    degraded: str | None = None  # why its peers cannot reach it, while ready
    last_exit: dict[str, Any] | None = None
    error: str | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    retry_at: float | None = None
    held: bool = False  # stopped by the admin
    waiting_for: str | None = None
    log: str | None = None  # lines its log dropped
    version: str | None = None
    installed: str | None = None  # code replaced under it

    def as_json(self) -> dict[str, Any]:
        return _json_of(self)


@dataclass(frozen=True)
class UnitReport(UnitStatus):
    """A unit in the `status` reply: also the interpreter and config files it runs with, its
    process tree's memory and CPU, and (--proxy) its server's state in the proxy."""

    python: str | None = None
    config_files: list[str] = field(default_factory=list)
    rss_bytes: int | None = None
    cpu_percent: float | None = None
    proxy: str | None = None

    def as_json(self, with_proxy: bool = True) -> dict[str, Any]:
        out = _json_of(self)
        if not with_proxy:
            del out["proxy"]
        return out


@dataclass(frozen=True)
class DaemonStatus:
    """The daemon in the `status` reply (the nested records stay JSON objects)."""

    pid: int | None = None
    version: str = ""
    state: str | None = None  # its phase
    config_generation: int | None = None
    config_on_disk: dict[str, Any] | None = None  # the files on disk, while rejected
    partial_upgrade: dict[str, Any] | None = None
    installed_code: dict[str, Any] | None = None
    reload_error: list[str] | None = None
    image_started_at: float | None = None
    paused: bool = False
    last_reload: dict[str, Any] | None = None
    last_upgrade: dict[str, Any] | None = None
    operation: dict[str, Any] | None = None  # {"name", "started_at"} of the one running
    queued: list[str] = field(default_factory=list)
    proxy: dict[str, Any] | None = None  # --proxy: {"kind", "target", "ok", "error", "drains"}

    def as_json(self) -> dict[str, Any]:
        return _json_of(self)


@dataclass(frozen=True)
class StatusReply:
    """`status`, `pause`, `resume` and `watch`'s first reply: the daemon and its units (or those asked for)."""

    daemon: DaemonStatus
    units: list[UnitReport]

    def as_json(self) -> dict[str, Any]:
        proxied = self.daemon.proxy is not None  # each unit says its proxy state only with --proxy
        return {"ok": True, "daemon": self.daemon.as_json(), "units": [u.as_json(proxied) for u in self.units]}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> StatusReply:
        return cls(_read(DaemonStatus, raw.get("daemon") or {}), [_read(UnitReport, u) for u in raw.get("units") or []])


@dataclass(frozen=True)
class OperationReply(StatusReply):
    """start/stop/restart UNIT...: the units' status once the operation is done; with stop's
    warnings (sharded groups) and restart --rolling's `halted_at` (the unit it halted at)."""

    warnings: list[str] | None = None
    halted_at: list[str] | None = None

    def as_json(self) -> dict[str, Any]:
        extra = {k: v for k, v in (("warnings", self.warnings), ("halted_at", self.halted_at)) if v is not None}
        return {**super().as_json(), **extra}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> OperationReply:
        status = StatusReply.from_json(raw)
        return cls(status.daemon, status.units, raw.get("warnings"), raw.get("halted_at"))


@dataclass(frozen=True)
class UnitChange:
    """`watch` after its first reply: one unit changed."""

    unit: UnitStatus
    daemon_state: str
    operation: dict[str, Any] | None

    def as_json(self) -> dict[str, Any]:
        return {"ok": True, "unit": self.unit.as_json(), "daemon_state": self.daemon_state,
                "operation": self.operation}


@dataclass(frozen=True)
class StopReply:
    """`stop` (every unit): at once, the steps in the order they stop."""

    order: list[str]

    def as_json(self) -> dict[str, Any]:
        return {"ok": True, "stopping": True, "order": self.order}


@dataclass(frozen=True)
class StoppedReply:
    """`stop`'s second reply: every unit is stopped. A cluster stop (--cluster, not --local) says
    what each node stopped, and which nodes did not answer (node -> why): their processes run on."""

    nodes: dict[str, list[str]] | None = None
    not_answering: dict[str, str] | None = None

    def as_json(self) -> dict[str, Any]:
        cluster = {"nodes": self.nodes, "not_answering": self.not_answering or {}} if self.nodes is not None else {}
        return {"ok": True, "stopped": True, **cluster}


@dataclass(frozen=True)
class ReopenedReply:
    def as_json(self) -> dict[str, Any]:
        return {"ok": True, "reopened": True}


@dataclass(frozen=True)
class ReexecReply:
    """`reexec`: sent just before the exec, by the pid that stays."""

    pid: int

    def as_json(self) -> dict[str, Any]:
        return {"ok": True, "reexec": True, "pid": self.pid}


@dataclass(frozen=True)
class UpgradeProgress:
    line: str

    def as_json(self) -> dict[str, Any]:
        return {"ok": True, "progress": self.line}


@dataclass(frozen=True)
class UpgradePlanReply:
    """`upgrade --dry-run`: what the upgrade would do (result plan), or why it would be refused."""

    result: str  # plan or rejected
    errors: list[str] = field(default_factory=list)
    code_name: str | None = None
    from_version: str | None = None
    to_version: str | None = None
    summary: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"ok": True, "dry_run": True, **_json_of(self)}


UPGRADE_RESULT_KEYS = {  # which of the optional fields each result carries, in this order
    "rejected": ("error", "errors"), "failed": ("error",),
    "partial": ("unit", "error", "actions", "note"), "upgraded": ("actions", "python"),
}


@dataclass(frozen=True)
class UpgradeResult:
    """`upgrade`'s outcome (also `status`'s last_upgrade): upgraded, rejected, failed (a command
    before any restart) or partial (halted at `unit`)."""

    at: float
    result: str
    code_name: str | None
    from_version: str | None
    to_version: str | None
    summary: list[str]
    unit: str | None = None
    error: str | None = None
    errors: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    note: str | None = None
    python: str | None = None  # upgraded onto another interpreter: the unit file's --python must follow

    def record(self) -> dict[str, Any]:
        """Without `ok`: as status's last_upgrade shows it."""
        fields = _json_of(self)
        head = ("at", "result", "code_name", "from_version", "to_version", "summary")
        return {k: fields[k] for k in (*head, *UPGRADE_RESULT_KEYS.get(self.result, ()))}

    def as_json(self) -> dict[str, Any]:
        return {"ok": True, **self.record()}


Reply = (StatusReply | UnitChange | StopReply | StoppedReply | ReopenedReply | ReexecReply | UpgradeProgress
         | UpgradePlanReply | UpgradeResult | ReloadOutcome | Refusal)


def read_reply(cmd: str, raw: Mapping[str, Any]) -> Reply:
    """A reply line (its JSON object) to `cmd`'s request as the dataclass it was built from:
    the one place a client reads the daemon's answers."""
    if raw.get("ok") is False:
        return Refusal(str(raw.get("error") or "the daemon refused the request"))
    if cmd == "watch" and "unit" in raw:
        return UnitChange(_read(UnitStatus, raw["unit"]), raw.get("daemon_state", ""), raw.get("operation"))
    if cmd in ("status", "pause", "resume", "watch"):
        return StatusReply.from_json(raw)
    if cmd == "stop" and ("stopping" in raw or "stopped" in raw):
        return StopReply(raw.get("order") or []) if raw.get("stopping") else \
            StoppedReply(raw.get("nodes"), raw.get("not_answering"))
    if cmd in ("start", "stop", "restart"):
        return OperationReply.from_json(raw)
    if cmd == "reload":
        return ReloadOutcome.from_json(raw)
    if cmd == "upgrade":
        if "progress" in raw:
            return UpgradeProgress(str(raw["progress"]))
        return _read(UpgradePlanReply, raw) if raw.get("dry_run") else _read(UpgradeResult, raw)
    if cmd == "reexec":
        return ReexecReply(int(raw.get("pid") or 0))
    return ReopenedReply()
