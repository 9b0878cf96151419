"""What the engine runs: generic unit specs, knowing nothing of any application."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# a unit name becomes a log file name, a record key and a metrics label
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
NAME_RULE = "letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64 characters"


def valid_name(name: str) -> bool:
    return NAME_PATTERN.fullmatch(name) is not None


def address(path: str | None, host: object, port: object) -> str:
    """Where a socket is, the way synsup prints it: `unix:PATH` or `HOST:PORT`."""
    return f"unix:{path}" if path else f"{host}:{port}"


@dataclass(frozen=True)
class HttpProbe:
    """GET `url_path` over TCP (host, port) or a UNIX socket (path); healthy on 200."""

    host: str | None = None
    port: int | None = None
    path: str | None = None
    url_path: str = "/health"
    tls: bool = False
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # sent with the request (a secret)

    def describe(self) -> str:
        return f"http://{address(self.path, self.host, self.port)}{self.url_path}"


@dataclass(frozen=True)
class RedisProbe:
    """PING (after AUTH when a password is set); healthy on +PONG."""

    host: str | None = None
    port: int | None = None
    path: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False

    def describe(self) -> str:
        return f"redis://{address(self.path, self.host, self.port)}"


@dataclass(frozen=True)
class TcpProbe:
    """Connect, then close: healthy when the address accepts connections (TCP or UNIX socket)."""

    host: str | None = None
    port: int | None = None
    path: str | None = None

    def describe(self) -> str:
        return address(self.path, self.host, self.port)


Probe = HttpProbe | RedisProbe | TcpProbe


@dataclass(frozen=True)
class PeerCheck:
    """How the unit's peers reach it (an address and a secret they are configured with),
    checked once it is ready and then slowly: a request as a peer would make it, answered 200
    by the unit's own process. A failure marks the unit degraded with the reason and the
    advice for it; it never restarts the unit (the fix is in the config)."""

    probe: HttpProbe
    route: str  # what names this way in, for the reason ("instance_map.typing1")
    # how a failure is fixed, by kind: "unreachable" (no connection, no answer), an HTTP status
    # ("404", "500"), "foreign" (a process outside the unit answers there), "" (any other)
    advice: tuple[tuple[str, str], ...] = ()

    def advice_for(self, kind: str) -> str:
        found = dict(self.advice)
        return found.get(kind) or found.get("", "")


@dataclass(frozen=True, slots=True)
class StartBeside:
    """Dependencies a unit may start beside instead of after: once their processes are spawned,
    not once they are ready, when `check` (an argv, fed `input` on stdin) exits 0 at that start
    (its first output line says why). A check that fails, cannot run or takes over `timeout`
    keeps the order: after them, as without it. Which units may overlap, and why, is the
    source's knowledge; the engine only runs the check."""

    units: tuple[str, ...]
    check: tuple[str, ...]
    input: bytes = field(default=b"", repr=False)
    timeout: float = 30.0


@dataclass(frozen=True, slots=True)  # no __dict__: a daemon keeps two specs per unit (600 bytes each less)
class UnitSpec:
    name: str
    argv: tuple[str, ...] | None  # None: an external service, only probed, never started
    env: tuple[tuple[str, str], ...] = ()
    stdin: bytes | None = field(default=None, repr=False)  # fed to the child, then closed
    cwd: str | None = None
    dependencies: tuple[str, ...] = ()
    probes: tuple[Probe, ...] = ()  # readiness and liveness checks
    peer_checks: tuple[PeerCheck, ...] = ()  # how others reach it: degraded, never restarted, when failing
    notify: bool = True  # gets a NOTIFY_SOCKET and may send READY=1
    ready_notify: bool = False  # sends READY=1 once ready: wait for it up to start_timeout
    group: str | None = None
    group_work: str = ""  # what stops without the group, for messages ("push notifications stop")
    step: int = 0
    kind: str = "process"
    app: str = ""
    start_timeout: float = 120.0
    stop_timeout: float = 30.0
    sighup_files: tuple[str, ...] = ()  # files whose change needs only SIGHUP
    describe: str = ""  # one line for plans and status
    metrics: tuple[str, ...] = ()  # HOST:PORT of the unit's own Prometheus endpoints
    metrics_labels: tuple[tuple[str, str], ...] = ()  # labels of its scrape target group
    listens: tuple[str, ...] = ()  # HOST:PORT and unix:PATH it binds: checked free before a spawn
    code_name: str = ""  # the application it runs, for messages ("Synapse")
    step_name: str = ""  # what its step is, for messages ("stream writers")
    slow_start: str = ""  # why its start may take long ("database migration"): systemd gets more time
    keep_env: tuple[str, ...] = ()  # prefixes of synsup's own variables it keeps (e.g. "SYNAPSE_")
    rolling: bool = True  # `restart --rolling` restarts it unless it is named (Redis: not)
    version: str = ""  # the application's version this spec runs (for status)
    code_file: str = ""  # a file of the installed code: changed under a running unit = new code installed
    code_version_glob: str = ""  # its package metadata dir, `NAME-VERSION.dist-info`: the installed version
    args_when_copied: tuple[str, ...] = ()  # added to argv when it reads copies of its config files
    reported: bool = False  # external (argv None) and never probed: its readiness is reported (`Unit.report`)
    start_beside: StartBeside | None = None  # dependencies it may start beside, when a check says so
    cpu_bound_start: bool = False  # its start computes for seconds (Synapse's imports): one per core at once


def steps_of(specs: list[UnitSpec]) -> list[list[str]]:
    """Unit names grouped by start step, in step order."""
    by_step: dict[int, list[str]] = {}
    for spec in specs:
        by_step.setdefault(spec.step, []).append(spec.name)
    return [by_step[s] for s in sorted(by_step)]
