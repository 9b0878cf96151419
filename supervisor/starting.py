"""`synsup start`: check, then run the daemon here or in the background and follow its start."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time

from .commands import state_of
from .control import ControlClient, NotRunning
from .daemon import Daemon
from .logs import configure
from .notify import SystemdNotifier
from .render import print_findings
from .source import Source
from .statedir import StateDir, leftover_units

SOCKET_WAIT = 30.0


def start(args: argparse.Namespace, source: Source, argv: list[str]) -> int:
    loaded = source.load(args)
    for note in loaded.notes:
        print(f"note: {note}", file=sys.stderr)
    print_findings([*loaded.errors, *loaded.warnings])
    if loaded.errors:
        print(f"{len(loaded.errors)} error(s): nothing started", file=sys.stderr)
        return 1
    state = state_of(args)
    if _answers(state):
        print(f"synsup is already running for {state.path}")
        return 0
    leftovers = leftover_units(state)
    if leftovers:
        names = ", ".join(f"{n} (pid {p})" for n, p in leftovers.items())
        print(f"synsup: error: processes started by an earlier synsup still run: {names}; "
              "stop them (kill the pids) before starting again", file=sys.stderr)
        return 1
    log_dir = os.path.abspath(args.log_dir or os.path.join(state.path, "logs"))
    if args.command == "run" or args.foreground:
        configure(args.log_format)
        daemon = Daemon(loaded, state, log_dir, reloader=lambda: source.load(args), planner=source.plan,
                        notifier=SystemdNotifier.from_environment())
        return asyncio.run(daemon.run())
    return _start_background(state, source, argv)


def _answers(state: StateDir) -> bool:
    try:
        with ControlClient(state.socket, timeout=5) as client:
            client.request({"cmd": "status"})
        return True
    except (NotRunning, OSError):
        return False


def _daemon_argv(source: Source, argv: list[str]) -> list[str]:
    rest = list(argv)
    rest[rest.index("start")] = "run"
    return [sys.executable, "-m", source.module] + [a for a in rest if a != "--foreground"]


def _start_background(state: StateDir, source: Source, argv: list[str]) -> int:
    state.create()
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
    with open(state.daemon_log, "ab") as log:
        daemon = subprocess.Popen(_daemon_argv(source, argv), stdin=subprocess.DEVNULL, stdout=log,
                                  stderr=log, env=env, start_new_session=True)
    client = _connect(state, daemon)
    if client is None:
        print(f"synsup: error: the daemon exited with code {daemon.returncode} before it was up; "
              f"see {state.daemon_log}:", file=sys.stderr)
        print(_tail(state.daemon_log), file=sys.stderr)
        return 1
    with client:
        return follow_start(client, sys.stdout)


def _connect(state: StateDir, daemon: subprocess.Popen) -> ControlClient | None:
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
    client.send({"cmd": "watch"})
    replies = client.replies()
    units = {u["name"]: u for u in next(replies)["units"]}
    live = out.isatty()
    for unit in list(units.values()):
        result = _progress(out, live, units, unit)
        if result is not None:
            return result
    for reply in replies:
        if "unit" in reply:
            result = _progress(out, live, units, reply["unit"])
            if result is not None:
                return result
    print("synsup: error: the daemon stopped during the start; see its log", file=sys.stderr)
    return 1


def _progress(out, live: bool, units: dict, unit: dict) -> int | None:
    """Print what changed; 0 when all are ready, 1 when one failed, None to go on."""
    previous = units.get(unit["name"], {})
    units[unit["name"]] = unit
    if unit["state"] == "ready" and not previous.get("_printed"):
        _line(out, live, f"ready  {unit['name']:<24} ({unit.get('uptime') or 0:.2f}s)")
        unit["_printed"] = True
    elif unit["state"] == "ready":
        unit["_printed"] = True
    if unit["state"] == "failed":
        _line(out, live, f"synsup: unit {unit['name']} failed: {unit['error']}", sys.stderr)
        print("the rest keeps running; see `synsup status` and `synsup logs UNIT`", file=sys.stderr)
        return 1
    if live:
        ready = sum(u["state"] == "ready" for u in units.values())
        busy = [u["name"] for u in units.values() if u["state"] in ("starting", "waiting", "backoff")]
        out.write(f"\r[{ready}/{len(units)} ready] {', '.join(busy[:3])}\x1b[K")
        out.flush()
    if all(u["state"] == "ready" for u in units.values()):
        _line(out, live, f"all {len(units)} units ready")
        return 0
    return None


def _line(out, live: bool, text: str, stream=None) -> None:
    stream = stream or out
    if live:
        out.write("\r\x1b[K")
    print(text, file=stream)
    stream.flush()
