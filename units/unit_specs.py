"""From the deployment model to the generic unit specs the engine runs."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from synsup.supervisor.loopback import reach_host
from synsup.supervisor.spec import HttpProbe, RedisProbe, StartBeside, TcpProbe, UnitSpec, address

from .metrics_listeners import metrics_targets, target_labels
from .model import Deployment, Listener, Process, Redis
from .replication_reach import replication_checks
from .roles import GROUP_WORK, group_of
from .synapse_version import parse_version

STEP_REDIS, STEP_MAIN, STEP_WRITERS, STEP_WORKERS = range(4)
STEP_NAMES = {STEP_REDIS: "Redis", STEP_MAIN: "main", STEP_WRITERS: "stream writers", STEP_WORKERS: "workers"}
# Synapse 1.3.0 (matrix-org/synapse#5732) added setup_sdnotify to synapse.app._base.start, which
# main and every worker app run after binding their listeners: READY=1 from every process
READY_NOTIFY_SINCE = (1, 3)
POSTGRES_WAIT = 600.0  # an external database may take a while to come up
LIBPQ_SOCKET_DIR = "/var/run/postgresql"  # libpq's default host on Debian, when `host` is not set
MAIN_START_TIMEOUT = 300.0  # main may be migrating the database
WORKER_START_TIMEOUT = 120.0
# Workers refuse a database whose schema main has not prepared or migrated, so main starts first.
# When the database already is at the schema of the code that will run (no migration, no delta
# file pending), they need nothing from main at their start: they reach it over replication and
# retry (Redis forever, HTTP replication ~60 s). Then the stream writers and the other workers
# start beside main, as synctl starts them, and each is still waited for until it is ready. The
# check runs at each start with the install's python; a database it cannot read is main first.
SCHEMA_CHECK_TIMEOUT = 10.0  # it takes ~0.1 s; a database that does not answer: main first
SCHEMA_CURRENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "synapse_programs", "schema_current.py")


def probe_for(listener: Listener) -> HttpProbe | None:
    if listener.type != "http":
        return None
    if listener.path:
        return HttpProbe(path=listener.path, tls=listener.tls)
    return HttpProbe(host=reach_host(listener.addresses), port=listener.port, tls=listener.tls)


def listens_of(p: Process) -> tuple[str, ...]:
    """Every address the process binds, as `HOST:PORT` or `unix:PATH`."""
    return tuple(f"unix:{where}" if host == "unix" else _host_port(host, where)
                 for listener in p.listeners for host, where in listener.endpoints())


def _host_port(host: str, port: object) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def cache_env(p: Process) -> tuple[tuple[str, str], ...]:
    """synctl's cache factor options, as the environment Synapse reads them from."""
    env: dict[str, str] = {}
    factor = p.config.get("synctl_cache_factor")
    if factor is not None:
        env["SYNAPSE_CACHE_FACTOR"] = str(factor)
    for layer in p.config.layers:
        factors: Any = layer.get("synctl_cache_factors")
        if isinstance(factors, dict):
            for cache, value in factors.items():
                env[f"SYNAPSE_CACHE_FACTOR_{str(cache).upper()}"] = str(value)
    return tuple(sorted(env.items()))


def _config_args(files: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(arg for f in files for arg in ("-c", os.path.abspath(f)))


def _keys_directory(files: tuple[str, ...]) -> tuple[str, ...]:
    """Synapse looks for a signing key without `signing_key_path` beside the last config file:
    the same directory when it reads copies of the files (`--keys-directory`)."""
    last = os.path.abspath(files[-1]) if files else ""
    return ("--keys-directory", last if os.path.isdir(last) else os.path.dirname(last)) if last else ()


def _log_files(p: Process) -> tuple[str, ...]:
    key = "log_config" if p.kind == "main" else "worker_log_config"
    path = p.config.get(key)
    return (os.path.abspath(path),) if isinstance(path, str) else ()


def sends_ready(synapse_version: str | None) -> bool:
    """Whether this Synapse sends READY=1 (unknown version: no, judge it like any process)."""
    return synapse_version is not None and parse_version(synapse_version) >= READY_NOTIFY_SINCE


@dataclass(frozen=True)
class InstalledSynapse:
    """The Synapse a process runs: its version and its package's __init__.py (from the version check)."""

    version: str | None = None
    file: str = ""

    def metadata_glob(self) -> str:
        """Where pip records the installed version: site-packages/matrix_synapse-VERSION.dist-info."""
        site = os.path.dirname(os.path.dirname(self.file)) if self.file else ""
        return os.path.join(site, "matrix_synapse-*.dist-info") if site else ""


def process_spec(d: Deployment, p: Process, writers: list[str], ready_notify: bool = False,
                 postgres: bool = False, code: InstalledSynapse = InstalledSynapse()) -> UnitSpec:
    is_main = p.kind == "main"
    files = d.config_files if is_main else d.config_files + (p.file or "",)
    module = "synapse.app.homeserver" if is_main else "synapse.app.generic_worker"
    deps: tuple[str, ...]
    if is_main:
        step, deps = STEP_MAIN, (("redis",) if d.redis else ()) + (("postgres",) if postgres else ())
    elif p.streams:
        step, deps = STEP_WRITERS, ("main",)
    else:
        step, deps = STEP_WORKERS, ("main", *writers)
    return UnitSpec(
        start_beside=None if is_main or not postgres else schema_current_check(d, deps),
        name=p.name,
        argv=(d.python, "-m", module) + _config_args(files),
        env=cache_env(p),
        dependencies=deps,
        probes=tuple(probe for l in p.listeners if (probe := probe_for(l))),
        peer_checks=replication_checks(d, p),
        group=group_of(p),
        group_work=GROUP_WORK.get(group_of(p) or "", ""),
        step=step,
        kind=p.kind,
        app=p.app,
        ready_notify=ready_notify,
        start_timeout=MAIN_START_TIMEOUT if is_main else WORKER_START_TIMEOUT,
        sighup_files=_log_files(p),
        describe=describe(p),
        metrics=metrics_targets(p),
        metrics_labels=target_labels(p),
        listens=listens_of(p),
        code_name="Synapse",
        step_name=STEP_NAMES[step],
        slow_start="database migration may take a while" if is_main else "",
        cpu_bound_start=True,  # about 2 s of CPU importing Synapse: one start per core at once
        keep_env=("SYNAPSE_",),
        version=code.version or "",
        code_file=code.file,
        code_version_glob=code.metadata_glob(),
        args_when_copied=_keys_directory(files),
    )


def schema_current_check(d: Deployment, units: tuple[str, ...]) -> StartBeside:
    """A worker may start beside main and the stream writers when the database needs no migration
    for the Synapse that will run (SCHEMA_CURRENT's reasons)."""
    database = json.dumps({"database": d.shared.get("database")}, sort_keys=True).encode()
    return StartBeside(units=units, check=(d.python, SCHEMA_CURRENT), input=database, timeout=SCHEMA_CHECK_TIMEOUT)


def describe(p: Process) -> str:
    parts = [p.app]
    if p.listeners:
        parts.append("listeners: " + "; ".join(l.describe() for l in p.listeners))
    roles = [f"writes {s}" for s in p.streams] + list(p.duties)
    if roles and p.kind == "worker":
        parts.append("roles: " + ", ".join(roles))
    return "  ".join(parts)


def redis_config(r: Redis) -> bytes:
    lines = ["daemonize no", 'save ""', "appendonly no"]
    if r.path:
        lines += ["port 0", f"unixsocket {r.path}", "unixsocketperm 700"]
    else:
        bind = "127.0.0.1 -::1" if r.host == "localhost" else r.host
        lines += [f"bind {bind}", f"port {r.port}"]
    if r.password:
        lines.append(f'requirepass "{r.password}"')
    return ("\n".join(lines) + "\n").encode()


def redis_spec(r: Redis, external: bool, redis_server: str = "redis-server") -> UnitSpec:
    host = None if r.path else ("127.0.0.1" if r.host == "localhost" else r.host)
    probe = RedisProbe(host=host, port=None if r.path else r.port, path=r.path,
                       password=r.password, tls=r.use_tls)
    place = address(r.path, r.host, r.port)
    return UnitSpec(
        name="redis",
        argv=None if external else (redis_server, "-"),
        stdin=None if external else redis_config(r),
        probes=(probe,),
        notify=False,
        step=STEP_REDIS,
        step_name=STEP_NAMES[STEP_REDIS],
        rolling=False,  # every process reconnects and reloads its streams: only when named
        kind="redis",
        app="redis-server" if not external else "external",
        start_timeout=30.0,
        describe=f"{'external ' if external else ''}redis {place}",
        listens=() if external else _redis_listens(r),
    )


def _redis_listens(r: Redis) -> tuple[str, ...]:
    if r.path:
        return (f"unix:{r.path}",)
    hosts = ("127.0.0.1", "::1") if r.host == "localhost" else (r.host,)
    return tuple(_host_port(host, r.port) for host in hosts)


def postgres_probe(database: object) -> TcpProbe | None:
    """Where Synapse's PostgreSQL answers: host:port, or `<dir>/.s.PGSQL.<port>` when host is a
    directory (libpq's UNIX socket convention); None for SQLite or an unreadable section."""
    if not isinstance(database, dict) or database.get("name") not in ("psycopg2", "psycopg"):
        return None
    args: dict = database.get("args") or {}
    args = args if isinstance(args, dict) else {}
    host = str(args.get("host") or LIBPQ_SOCKET_DIR)
    port = args.get("port", 5432)
    port = int(port) if str(port).isdigit() else 5432
    if host.startswith("/"):
        return TcpProbe(path=os.path.join(host, f".s.PGSQL.{port}"))
    return TcpProbe(host="127.0.0.1" if host == "localhost" else host, port=port)


def postgres_spec(probe: TcpProbe) -> UnitSpec:
    return UnitSpec(
        name="postgres",
        argv=None,
        probes=(probe,),
        notify=False,
        step=STEP_REDIS,
        kind="postgres",
        app="external",
        start_timeout=POSTGRES_WAIT,
        describe=f"external postgres {probe.describe()}",
    )


def unit_specs(d: Deployment, external_redis: bool = False, synapse_version: str | None = None,
               synapse_file: str = "") -> list[UnitSpec]:
    code = InstalledSynapse(synapse_version, synapse_file)
    writers = [w.name for w in d.workers if w.streams]
    specs = [redis_spec(d.redis, external_redis)] if d.redis else []
    database = postgres_probe(d.shared.get("database"))
    specs += [postgres_spec(database)] if database else []
    specs += [process_spec(d, p, writers, sends_ready(synapse_version), database is not None, code)
              for p in d.processes]
    return sorted(specs, key=lambda s: s.step)
