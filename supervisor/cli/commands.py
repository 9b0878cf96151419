"""The client commands: check, status, stop, restart, reload, logs."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any, TypeVar

from ..daemon.control_server import ControlClient, ControlError, ControlTimeout, DaemonNotAnswering
from ..daemon.scrape_targets import targets_json
from ..errors import NotRunning, SynsupError
from ..process_records import running_daemon
from ..protocol import (
    DaemonStatus,
    OperationReply,
    ReexecReply,
    Refusal,
    ReloadOutcome,
    ReloadResult,
    Request,
    StatusReply,
    StoppedReply,
    StopReply,
    UnitStatus,
)
from ..source import Loaded
from ..spec import NAME_RULE, steps_of, valid_name
from ..statedir import StateDir, default_state_dir
from . import follow_logs
from .leftovers import leftover_records, orphan_rows, stop_leftovers, wait_gone
from .render import print_findings, print_plan, status_table, use_colour

R = TypeVar("R")
STOP_ANSWER_WAIT = 10.0  # a live daemon says "stopping" at once; the stop itself may take long


def state_of(args: argparse.Namespace) -> StateDir:
    """The state dir, checked to be ours before anything in it is trusted (StateDirError if not)."""
    state = StateDir(os.path.abspath(args.state_dir or default_state_dir()))
    state.verify()
    return state


def refused(loaded: Loaded, consequence: str) -> bool:
    """Print the notes; with errors, the findings and "N error(s)CONSEQUENCE" (True)."""
    for note in loaded.notes:
        print(f"note: {note}", file=sys.stderr)
    if not loaded.errors:
        return False
    print_findings([*loaded.errors, *loaded.warnings])
    print(f"{len(loaded.errors)} error(s){consequence}", file=sys.stderr)
    return True


def check(loaded: Loaded, as_json: bool, extra: dict[str, Any] | None = None) -> int:
    """`extra`: more keys for the JSON (`--cluster`: the placement)."""
    if as_json:
        print(json.dumps({
            "ok": not loaded.errors,
            "errors": [f.as_json() for f in loaded.errors],
            "warnings": [f.as_json() for f in loaded.warnings],
            "notes": loaded.notes,
            "steps": steps_of(loaded.specs) if not loaded.errors else [],
        } | (extra or {}), indent=2))
        return 1 if loaded.errors else 0
    if refused(loaded, ": nothing would start"):
        return 1
    print_plan(loaded.specs)
    print_findings(loaded.warnings)
    return 0


def all_ready(units: Sequence[UnitStatus]) -> bool:
    """Exit 0 material: every unit ready (not degraded), but for those stopped by the admin (intended)."""
    return all((u.state == "ready" and not u.degraded) or (u.held and u.state == "stopped") for u in units)


def status(args: argparse.Namespace) -> int:
    state = state_of(args)
    try:
        with ControlClient(state.socket) as client:
            reply = client.ask(Request("status", tuple(args.units)), StatusReply)
    except NotRunning:
        return _status_without_daemon(state, args.json)
    if args.json:
        printed = reply.as_json()
        printed.pop("ok")
        print(json.dumps(printed, indent=2))
    else:
        print(status_table(reply, time.time(), use_colour(sys.stdout)))
    return 0 if all_ready(reply.units) else 1


def _status_without_daemon(state: StateDir, as_json: bool) -> int:
    """No daemon (exit 3); processes a dead daemon left behind are listed as `orphaned`."""
    silent = running_daemon(state)
    if silent is not None:  # alive, but no socket to ask: its units are not orphans
        raise SynsupError(f"the synsup daemon (pid {silent}) does not answer on {state.socket} (still "
                          "starting, or its socket was removed); `synsup stop` stops it")
    rows = orphan_rows(leftover_records(state), state)
    if as_json:
        print(json.dumps({"daemon": None, "units": rows}))
    print(f"synsup is not running (state dir {state.path})", file=sys.stderr)
    if rows:
        print("processes left by a synsup daemon that is gone (`synsup start` takes over those its config still "
              "runs; `synsup stop` stops them):", file=sys.stderr)
        for row in rows:
            print(f"  {row['name']:<24} orphaned  pid {row['pid']}", file=sys.stderr)
    return NotRunning.exit_code


def stop(args: argparse.Namespace) -> int:
    if args.units:
        return unit_command(args, Request("stop", tuple(args.units), force=args.force, node=args.node))
    state = state_of(args)
    try:
        client = ControlClient(state.socket, timeout=STOP_ANSWER_WAIT)
    except NotRunning:
        return _stop_without_daemon(state)
    pid = running_daemon(state)
    last = None
    with client:
        client.send(Request("stop", node=args.node, local=args.local))
        replies = client.answers()
        try:
            first = next(replies, None)
        except (ControlTimeout, DaemonNotAnswering):
            raise ControlError(f"the daemon{f' (pid {pid})' if pid else ''} did not answer `stop` within "
                               f"{STOP_ANSWER_WAIT:g}s: it is hung or stopped (SIGSTOP); see {state.daemon_log}") from None
        if isinstance(first, Refusal):
            raise SynsupError(first.error)
        client.sock.settimeout(None)  # answering: the stop takes as long as the units' stop timeouts
        if isinstance(first, StopReply):
            print(f"stopping: {', then '.join(first.order or ['every unit'])} ...", flush=True)
        for reply in replies:
            last = reply
    if isinstance(last, StoppedReply) and last.nodes is not None:
        return _cluster_stopped(last, pid if args.node is None else None)
    if pid is not None:
        wait_gone([pid], 30.0)
    print("stopped")
    return 0


def _cluster_stopped(reply: StoppedReply, pid: int | None) -> int:
    """A cluster stop's summary: what each node stopped; the nodes that did not answer (exit 1)."""
    if pid is not None:  # this node's daemon ended too (None: --node N, another node)
        wait_gone([pid], 30.0)
    for node, names in (reply.nodes or {}).items():
        print(f"node {node}: stopped {', '.join(names) if names else 'its daemon (no unit was running)'}")
    for node, why in (reply.not_answering or {}).items():
        print(f"synsup: node {node} did not stop: {why}; its processes run on: `synsup stop --local` on {node} "
              "stops them", file=sys.stderr)
    print("stopped" if not reply.not_answering else "stopped, but for " + ", ".join(reply.not_answering))
    return 1 if reply.not_answering else 0


def _stop_without_daemon(state: StateDir) -> int:
    starting = running_daemon(state)
    if starting is not None:  # not listening (still starting, or its socket was removed): SIGTERM stops it cleanly
        os.kill(starting, signal.SIGTERM)
        wait_gone([starting], 120.0)
        print("stopped (the daemon did not listen on its control socket: sent it SIGTERM)")
        return 0
    names = stop_leftovers(state)
    if names:
        print(f"stopped {len(names)} processes left by a synsup daemon that is gone: {', '.join(names)}")
        return 0
    print(f"synsup is not running (state dir {state.path}); nothing to stop")
    return 0


def _long_request(args: argparse.Namespace, request: Request, kind: type[R]) -> R:
    """A request that may wait behind other operations: its reply, a `kind`."""
    state = state_of(args)
    try:
        with ControlClient(state.socket, timeout=args.timeout) as client:
            return client.ask(request, kind)
    except ControlTimeout:
        raise SynsupError(f"still running: {_running_operation(state)} (gave up waiting after "
                          f"{args.timeout:g}s; see `synsup status`)") from None


def _running_operation(state: StateDir) -> str:
    try:
        with ControlClient(state.socket, timeout=10) as client:
            operation = client.ask(Request("status"), StatusReply).daemon.operation or {}
    except ControlError:
        return "an operation"
    return str(operation.get("name") or "an operation")


def restart(args: argparse.Namespace) -> int:
    reply = _long_request(args, Request("restart", tuple(args.units), rolling=args.rolling, node=args.node),
                          OperationReply)
    print(status_table(reply, time.time()))
    if reply.halted_at:
        raise SynsupError(f"restart --rolling halted at {reply.halted_at[0]}: it did not become ready; "
                          "the units after it were not restarted (see `synsup status`)")
    return 0 if all_ready(reply.units) else 1


def unit_command(args: argparse.Namespace, request: Request) -> int:
    """stop/start UNIT... with the daemon running: the warnings, then the units' status."""
    args.timeout = getattr(args, "timeout", 600.0)
    reply = _long_request(args, request, OperationReply)
    for warning in reply.warnings or []:
        print(f"synsup: warning: {warning}", file=sys.stderr)
    print(status_table(reply, time.time()))
    wanted = "stopped" if request.cmd == "stop" else "ready"
    return 0 if all(u.state == wanted for u in reply.units) else 1


def units(args: argparse.Namespace) -> int:
    try:
        with ControlClient(state_of(args).socket, timeout=2) as client:
            reply = client.ask(Request("status"), StatusReply)
    except (NotRunning, ControlError):
        return 0  # completion: nothing to offer
    print("\n".join(u.name for u in reply.units))
    return 0


def reopen_logs(args: argparse.Namespace) -> int:
    return _switch(args, "reopen_logs", "reopened the unit logs and daemon.log", node=None)


def pause(args: argparse.Namespace) -> int:
    return _switch(args, "pause", "paused: no automatic restarts and no reloads until `synsup resume`", args.node)


def resume(args: argparse.Namespace) -> int:
    return _switch(args, "resume", "resumed: automatic restarts and reloads again", args.node)


NODE_ANSWER_WAIT = 130.0  # --cluster: every node answers (each within 120 s) or is named


def _switch(args: argparse.Namespace, command: str, done: str, node: str | None) -> int:
    """`node`: --node N (pause/resume under --cluster); reopen-logs is this daemon's only."""
    with ControlClient(state_of(args).socket, timeout=NODE_ANSWER_WAIT) as client:
        client.request(Request(command, node=node))
    print(done)
    return 0


REEXEC_WAIT = 120.0  # for the new image to answer (it loads the config and adopts every unit)


def reexec(args: argparse.Namespace) -> int:
    """The daemon re-executes itself in place: same pid, every unit kept."""
    state = state_of(args)
    with ControlClient(state.socket) as client:
        before = client.ask(Request("status"), StatusReply).daemon
    trial = args.trial_timeout
    if not 0 < trial <= 3600:
        raise SynsupError(f"--trial-timeout {trial:g}: give a number of seconds above 0 (at most 3600)")
    with ControlClient(state.socket, timeout=REEXEC_WAIT + trial) as client:
        client.ask(Request("reexec", trial_timeout=trial), ReexecReply)  # ControlError (one line) if refused
    after = _new_image(state, before.image_started_at, time.monotonic() + REEXEC_WAIT)
    if after is None:
        raise SynsupError(f"the daemon (pid {before.pid}) did not answer within {REEXEC_WAIT:g}s after "
                          f"re-executing itself; see {state.daemon_log}")
    print(f"re-executed in place: pid {after.pid}, synsup {before.version} -> {after.version}")
    return 0


def _new_image(state: StateDir, old_image: float | None, deadline: float) -> DaemonStatus | None:
    """The daemon's status once a new image answers (None at the deadline)."""
    while time.monotonic() < deadline:
        try:
            with ControlClient(state.socket, timeout=5) as client:
                daemon = client.ask(Request("status"), StatusReply).daemon
            if daemon.image_started_at != old_image:
                return daemon
        except (NotRunning, ControlError, OSError):
            pass
        time.sleep(0.1)
    return None


def reload(args: argparse.Namespace) -> int:
    reply = _long_request(args, Request("reload", dry_run=args.dry_run), ReloadOutcome)
    for line in reply.errors:
        print(line, file=sys.stderr)
    for action in reply.actions:
        print(action)
    if reply.dry_run:
        return 1 if reply.errors else 0
    if reply.result is ReloadResult.PARTIAL:
        raise SynsupError(f"reload partial: {reply.unit} did not become ready: {reply.error}; "
                          "it runs its last good config again, the units not yet restarted kept theirs")
    return 0 if reply.result is ReloadResult.APPLIED else 1


def log_dir_of(state: StateDir, given: str | None) -> str:
    """--log-dir, else the one the last daemon recorded (kept after it stopped), else the default."""
    if given:
        return os.path.abspath(given)
    record = state.read_json(state.log_dir_file) or state.read_json(state.daemon_file) or {}
    return str(record.get("log_dir") or os.path.join(state.path, "logs"))


def logs(args: argparse.Namespace) -> int:
    log_dir = log_dir_of(state_of(args), args.log_dir)
    if args.unit:
        if not valid_name(args.unit):
            raise SynsupError(f"{args.unit!r} is no unit name ({NAME_RULE}); see `synsup status`")
        path = os.path.join(log_dir, f"{os.path.basename(args.unit)}.log")
        if not os.path.exists(path):
            raise SynsupError(f"no log for unit {args.unit!r} ({path}); pass --log-dir DIR if the "
                              "logs are elsewhere")
        return follow_logs.show({args.unit: path}, args.lines, args.follow)
    try:
        names = sorted(n[:-4] for n in os.listdir(log_dir) if n.endswith(".log"))
    except OSError as e:
        raise SynsupError(f"cannot read log dir {log_dir}: {e.strerror}; pass --log-dir DIR") from None
    return follow_logs.show({n: os.path.join(log_dir, f"{n}.log") for n in names}, args.lines, args.follow)


def targets(loaded: Loaded) -> int:
    """`synsup targets`: the groups of a config that checks out, or its errors."""
    if loaded.errors:
        print_findings(loaded.errors)
        print(f"{len(loaded.errors)} error(s): no targets", file=sys.stderr)
        return 1
    print(targets_json(loaded.specs), end="")
    return 0
