"""`synsup start`: check, then run the daemon here or in the background and follow its start."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import fcntl
import functools
import gc
import os
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..daemon import reexec
from ..daemon.control_server import ControlClient
from ..daemon.daemon import Daemon
from ..daemon.daemon_log import DaemonLog, configure
from ..daemon.proxy_doors import front_door_of
from ..daemon.records import adoptable
from ..daemon.systemd import SystemdNotifier
from ..daemon.telemetry import Telemetry
from ..daemon.unit_code import CodeRecord
from ..daemon.upgrade_operation import Upgrader
from ..engine.environment import read_env_file, with_environment
from ..engine.log_dir import prepare_log_dir
from ..engine.preflight import addresses_in_use
from ..engine.probes import check
from ..errors import NotRunning, SynsupError
from ..owner_mark import read_token
from ..process_records import process_record, running_daemon
from ..protocol import Request, StatusReply, UnitChange, UnitStatus
from ..source import Loaded, Source
from ..spec import UnitSpec
from ..statedir import StateDir
from . import cluster
from .commands import state_of, unit_command
from .leftovers import leftover_records, listening, orphan_rows, retire_moved, stop_leftovers
from .render import print_findings
from .start_code import code_refusal

if TYPE_CHECKING:
    from ..cluster_config import ClusterConfig

SOCKET_WAIT = 30.0


def start(args: argparse.Namespace, source: Source, argv: list[str]) -> int:
    units = _unit_names(args)
    if units:
        if not _answers(state_of(args)):
            raise SynsupError(f"no daemon runs to start {', '.join(units)} in; start the deployment "
                              "first (`synsup start -c ... -a ...`)")
        return unit_command(args, Request("start", tuple(units), node=args.node))
    state = state_of(args)  # a state dir that is not ours is the first thing to say
    variables = read_env_file(args.env_file) if args.env_file else {}
    loaded = with_environment(source.load(args), variables)
    for note in loaded.notes:
        print(f"note: {note}", file=sys.stderr)
    print_findings([*loaded.errors, *loaded.warnings])
    if loaded.errors:
        print(f"{len(loaded.errors)} error(s): nothing started{_unsupervised(state)}", file=sys.stderr)
        return 1
    telemetry = Telemetry.from_args(args)  # a bad --metrics is an error before anything starts
    joined = cluster.joining(args, source, loaded)  # a bad --cluster too
    whole_source, whole = source, loaded
    if joined:  # from here on every load and plan is this node's
        source, loaded = cluster.on_node(args, source, joined, loaded)
    front_door_of(args, functools.partial(source.proxy_layout, args))  # and a bad --proxy
    if os.environ.get(reexec.ENV):  # a daemon re-executing itself: its own units and socket are no obstacle
        return _run_daemon(args, source, state, loaded, variables, telemetry, joined)
    if _answers(state):
        print(f"synsup is already running for {state.path}")
        return 0
    silent = running_daemon(state)
    if silent is not None and silent != os.getpid():  # (a daemon started in the background is in its own record)
        raise SynsupError(f"a synsup daemon (pid {silent}) runs for {state.path} but does not answer on "
                          f"{state.socket} (still starting, or its socket was removed); stop it with `synsup stop` first")
    adopt: dict[str, int] = {}
    if getattr(args, "replace", False):
        stop_leftovers(state)  # --replace: what an earlier daemon left is stopped, not adopted
    else:
        code = CodeRecord.read(state)  # a partial upgrade's units run the new code: adopted as such
        adopt = adoptable(state, [code.put_on(s) for s in loaded.specs], read_token(state))
        if joined:
            loaded, adopt = _moved_away(args, state, whole_source, joined, whole, loaded, adopt)
    leftovers = [r for r in orphan_rows(leftover_records(state), state) if r["name"] not in adopt]
    if leftovers:
        names = ", ".join(f"{r['name']} (pid {r['pid']})" for r in leftovers)
        raise SynsupError(f"processes started by an earlier synsup still run: {names}; "
                          "stop them with `synsup stop`, or start with --replace")
    refusal = code_refusal(state, source, args, loaded)
    if refusal:
        raise SynsupError(refusal)
    taken = addresses_in_use([s for s in loaded.specs if s.name not in adopt])
    if taken:  # refused before any daemon exists: nothing stays behind to start later by itself
        raise SynsupError(f"{'; '.join(taken[:3])}{' ...' if len(taken) > 3 else ''}: the deployment (or "
                          "something on its addresses) runs already, under another state dir?; nothing started")
    if args.command == "run" or args.foreground:
        return _run_daemon(args, source, state, loaded, variables, telemetry, joined)
    state.create()
    prepare_log_dir(os.path.abspath(args.log_dir or os.path.join(state.path, "logs")))
    run = functools.partial(_run_daemon, args, source, state, loaded, variables, telemetry, joined)
    return _start_background(state, source, argv, loaded.specs, run)


def _moved_away(args: argparse.Namespace, state: StateDir, source: Source, joined: tuple[ClusterConfig, str],
                whole: Loaded, loaded: Loaded, adopt: dict[str, int]) -> tuple[Loaded, dict[str, int]]:
    """`start --cluster`: what an earlier daemon of this node left running of units the cluster now
    places on another node (moved while this node's daemon was down) never runs beside the new
    node's: retired here (`retired: persister2 (now placed on c)`), or, when the plan in progress
    still stops it here, adopted as it runs (a unit made from its record) for that step to stop."""
    records = leftover_records(state)
    moved, to_plan, pending = cluster.moved_away(args, source, joined, whole, [n for n in records if n not in adopt])
    retire = {n: node for n, node in moved.items() if n not in to_plan}
    if retire:
        retire_moved(state, retire)
    if not to_plan:
        return loaded, adopt
    for name in sorted(to_plan):
        print(f"left to the cluster's plan: {name} (placed on {moved[name]} by these files, which the cluster "
              "has not applied: it runs on here until the plan that applies them stops it)" if pending else
              f"left to the plan in progress: {name} (now placed on {moved[name]}; the plan stops it here)")
    code = {s.name: s for s in whole.specs}
    kept = [_as_recorded(n, records[n], moved[n], code.get(n)) for n in sorted(to_plan)]
    return dataclasses.replace(loaded, specs=[*loaded.specs, *kept]), adopt | adoptable(state, kept, read_token(state))


def _as_recorded(name: str, record: dict[str, Any], node: str, placed: UnitSpec | None) -> UnitSpec:
    """A unit for a process an earlier daemon left, as its record says it runs (command, step,
    stop timeout) and the addresses it listens on: adopted, stopped by the plan's step. It runs
    the application's code as the unit does where it is placed now (held with this node's other
    such processes while its files are not the cluster's: adopted, never retired for them)."""
    return UnitSpec(name, tuple(record["cmdline"]), step=int(record.get("step") or 0),
                    stop_timeout=float(record.get("stop_timeout") or 30.0), listens=listening(int(record["pid"])),
                    describe=f"{name} as an earlier daemon started it (placed on node {node} now)",
                    code_name=placed.code_name if placed else "", version=placed.version if placed else "")


def _unsupervised(state: StateDir) -> str:
    """What a refused start leaves running: the units of a daemon that died, if any."""
    left = leftover_records(state) if not _answers(state) else {}
    if not left:
        return ""
    return (f"; {len(left)} process(es) of a synsup daemon that is gone still run, unsupervised "
            f"({', '.join(sorted(left))}): fix the config and `synsup start` adopts them, or `synsup stop`")


def _run_daemon(args: argparse.Namespace, source: Source, state: StateDir, loaded: Loaded,
                variables: dict[str, str], telemetry: Telemetry,
                joined: tuple[ClusterConfig, str] | None) -> int:
    """This process becomes the daemon (`run`, `start --foreground`)."""
    log_dir = os.path.abspath(args.log_dir or os.path.join(state.path, "logs"))
    state.create()
    log_dir = prepare_log_dir(log_dir)
    daemon_log = DaemonLog.of_stderr(state.daemon_log, args.log_max_bytes, args.log_backups)
    configure(args.log_format, daemon_log=daemon_log)
    watch = not args.no_watch and os.environ.get("SYNSUP_WATCH", "1") != "0"
    gc.collect()  # the command's garbage (its argument parser's cycles): the units' objects fill it, not new memory
    daemon = Daemon(loaded, state, log_dir, reloader=lambda: with_environment(source.load(args), variables),
                    planner=source.plan,
                    notifier=SystemdNotifier.from_environment(), watch=watch, settle=args.watch_settle,
                    telemetry=telemetry, daemon_log=daemon_log,
                    log_rotation=(args.log_max_bytes, args.log_backups), upgrader=_upgrader(source, args),
                    cluster=cluster.node_in_cluster(joined, loaded, args, source, variables) if joined else None,
                    front_door=front_door_of(args, functools.partial(source.proxy_layout, args)))
    return asyncio.run(daemon.run())


def _upgrader(source: Source, args: argparse.Namespace) -> Upgrader:
    return functools.partial(source.upgrade, args)


def waiting_for_external(specs: list[UnitSpec], timeout: float = 1.0) -> list[str]:
    """One line per external service (never started by us) that does not answer yet."""
    async def answers(spec: UnitSpec) -> bool:
        results = await asyncio.gather(*(check(p, timeout) for p in spec.probes))
        return not any(results)

    async def silent() -> list[UnitSpec]:
        external = [s for s in specs if s.argv is None and s.probes]
        verdicts = await asyncio.gather(*(answers(s) for s in external))
        return [s for s, ok in zip(external, verdicts) if not ok]

    return [f"waiting for {s.name} at {s.probes[0].describe()}" for s in asyncio.run(silent())]


def _unit_names(args: argparse.Namespace) -> list[str]:
    """`synsup start UNIT...`: names after the command (a CONFIGFILE that is no file is one too)."""
    units = list(getattr(args, "units", None) or [])
    configfile = getattr(args, "configfile", None)
    if configfile and not os.path.exists(configfile) and (units or not getattr(args, "config", None)) \
            and not configfile.endswith((".yaml", ".yml")) and "/" not in configfile:
        units.insert(0, configfile)
    return units


def _answers(state: StateDir) -> bool:
    try:
        with ControlClient(state.socket, timeout=5) as client:
            client.request(Request("status"))
        return True
    except (NotRunning, OSError):
        return False


def _daemon_argv(source: Source, argv: list[str]) -> list[str]:
    rest = list(argv)
    rest[rest.index("start")] = "run"
    return [sys.executable, "-m", source.module] + [a for a in rest if a not in ("--foreground", "--replace")]


class ForkedDaemon:
    """The daemon as a fork of this command: what `_start_background` reads of a Popen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


def fork_daemon(log_fd: int, run: Callable[[], int]) -> ForkedDaemon:
    """This command, its code imported and its config loaded and checked, forks the daemon:
    no second Python start-up, import and load before Redis is spawned (half a second of CPU).
    The child is what `synsup run` would be: a session of its own, stdin /dev/null, stdout
    and stderr on daemon.log, not systemd's (NOTIFY_SOCKET, JOURNAL_STREAM); `reexec` runs
    this command line again, which the re-executing daemon's variable makes a daemon."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return ForkedDaemon(pid)
    code = 1
    try:
        os.setsid()
        log = fcntl.fcntl(log_fd, fcntl.F_DUPFD, 3)  # above 0-2: the caller may have run us with stdin closed
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        # nothing of whoever ran the command (a pipe a CI job waits on) stays open, nor a second
        # daemon.log descriptor (a rotated-away log would never be freed)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        for name in ("NOTIFY_SOCKET", "JOURNAL_STREAM"):
            os.environ.pop(name, None)
        code = run()
    except SynsupError as e:
        print(e.line(), file=sys.stderr)
        code = e.exit_code
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _start_background(state: StateDir, source: Source, argv: list[str], specs: list[UnitSpec],
                      run: Callable[[], int]) -> int:
    state.create()
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
    daemon: subprocess.Popen | ForkedDaemon
    with open(state.daemon_log, "ab") as log:
        if threading.active_count() == 1:  # a fork of a process with threads could inherit a held lock
            daemon = fork_daemon(log.fileno(), run)
        else:
            daemon = subprocess.Popen(_daemon_argv(source, argv), stdin=subprocess.DEVNULL, stdout=log,
                                      stderr=log, env=env, start_new_session=True)
    # at once, so that a `synsup stop` before the daemon listens finds it and stops it
    state.write_json(state.daemon_file, process_record(daemon.pid) or {"pid": daemon.pid})
    client = _connect(state, daemon)
    if client is None:
        raise SynsupError(f"the daemon exited with code {daemon.returncode} before it was up; "
                          f"see {state.daemon_log}:\n{_tail(state.daemon_log)}")
    for line in waiting_for_external(specs):
        print(line, flush=True)
    with client:
        started = follow_start(client, sys.stdout)
    _warn_about_proxy(state)
    return started


def _warn_about_proxy(state: StateDir) -> None:
    """--proxy: a proxy the daemon cannot use is said here too (the units are supervised without it)."""
    try:
        with ControlClient(state.socket, timeout=5) as client:
            proxy = client.ask(Request("status"), StatusReply).daemon.proxy
    except (NotRunning, OSError):
        return
    if proxy and proxy.get("error"):
        print(f"synsup: warning: proxy {proxy['kind']}: {proxy['error']}; supervising without it", file=sys.stderr)


def _connect(state: StateDir, daemon: subprocess.Popen | ForkedDaemon) -> ControlClient | None:
    deadline = time.monotonic() + SOCKET_WAIT
    while time.monotonic() < deadline and daemon.poll() is None:
        try:
            return ControlClient(state.socket, timeout=None)
        except NotRunning:
            time.sleep(0.05)
    return None


def _tail(path: str, n: int = 10) -> str:
    try:
        with open(path, "rb") as f:
            return b"".join(f.read().splitlines(keepends=True)[-n:]).decode(errors="replace")
    except OSError:
        return ""


def follow_start(client: ControlClient, out) -> int:
    """Print each unit as it becomes ready; 0 once all are, 1 naming a unit that failed."""
    client.send(Request("watch"))
    replies = client.answers()
    first = next(replies, None)
    if not isinstance(first, StatusReply):
        raise SynsupError("the daemon stopped during the start; see its log")
    units: dict[str, UnitStatus] = {u.name: u for u in first.units}
    printed: set[str] = set()
    live = out.isatty()
    for unit in list(units.values()):
        result = _progress(out, live, units, unit, printed)
        if result is not None:
            return result
    for reply in replies:
        if isinstance(reply, UnitChange):
            result = _progress(out, live, units, reply.unit, printed)
            if result is not None:
                return result
    raise SynsupError("the daemon stopped during the start; see its log")


def _progress(out, live: bool, units: dict[str, UnitStatus], unit: UnitStatus, printed: set[str]) -> int | None:
    """Print what changed; 0 when all are ready, 1 when one failed, None to go on."""
    units[unit.name] = unit
    if unit.state == "ready" and unit.name not in printed:
        _line(out, live, f"ready  {unit.name:<24} ({unit.uptime or 0:.2f}s)")
        printed.add(unit.name)
    if unit.state == "failed":
        _line(out, live, f"synsup: unit {unit.name} failed: {unit.error}", sys.stderr)
        print("the rest keeps running; see `synsup status` and `synsup logs UNIT`", file=sys.stderr)
        return 1
    if live:
        ready = sum(u.state == "ready" for u in units.values())
        busy = [u.name for u in units.values() if u.state in ("starting", "waiting", "backoff")]
        out.write(f"\r[{ready}/{len(units)} ready] {', '.join(busy[:3])}\x1b[K")
        out.flush()
    if all(u.state == "ready" for u in units.values()):
        _line(out, live, f"all {len(units)} units ready")
        return 0
    if all(u.state == "ready" or (u.held and u.state == "stopped") for u in units.values()):
        held = [u.name for u in units.values() if u.state != "ready"]  # e.g. until the cluster's plan
        _line(out, live, f"{len(units) - len(held)} units ready, held (not started): {', '.join(held)}")
        return 0
    return None


def _line(out, live: bool, text: str, stream=None) -> None:
    stream = stream or out
    if live:
        out.write("\r\x1b[K")
    print(text, file=stream)
    stream.flush()
