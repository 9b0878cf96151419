"""`synsup upgrade`: send the request, print its progress lines, then the outcome."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..daemon.control_server import ControlClient, ControlTimeout, NotRunning
from .commands import EXIT_NOT_RUNNING, state_of


def upgrade(args: argparse.Namespace) -> int:
    request: dict[str, Any] = {"cmd": "upgrade", "dry_run": args.dry_run, "allow_downtime": args.allow_downtime}
    if args.python:
        python = os.path.abspath(args.python)
        if not os.access(python, os.X_OK) or os.path.isdir(python):
            print(f"synsup: error: --python {args.python}: no such interpreter; pass the python of the "
                  "virtualenv the new Synapse is installed in (e.g. /opt/venvs/synapse-new/bin/python)",
                  file=sys.stderr)
            return 1
        request["python"] = python
    state = state_of(args)
    try:
        with ControlClient(state.socket, timeout=args.timeout) as client:
            client.send(request)
            for reply in client.replies():
                if "progress" in reply:
                    print(reply["progress"], flush=True)
                    continue
                return outcome(reply)
    except NotRunning:
        print(f"synsup is not running (state dir {state.path}); use `synsup start`", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except ControlTimeout:
        print(f"synsup: error: the upgrade is still running (gave up waiting after {args.timeout:g}s; "
              "see `synsup status`)", file=sys.stderr)
        return 1
    print("synsup: error: the daemon closed the connection during the upgrade; see `synsup status`", file=sys.stderr)
    return 1


def outcome(reply: dict[str, Any]) -> int:
    if reply.get("dry_run"):
        return _print_plan(reply)
    result = reply.get("result")
    if result == "upgraded":
        print(f"upgraded: Synapse {reply.get('from_version')} -> {reply.get('to_version')}")
        if reply.get("python"):
            print(f"the next `synsup start` must run this code too: update --python in the unit file "
                  f"(ExecStart in synsup.service) to --python {reply['python']}")
        return 0
    if result == "rejected":
        for line in reply.get("errors") or []:
            print(line, file=sys.stderr)
        print("synsup: error: upgrade refused; nothing changed", file=sys.stderr)
    elif result == "failed":
        print(f"synsup: error: upgrade failed before any restart: {reply.get('error')}; the processes keep "
              "running the old code", file=sys.stderr)
    else:
        done = "; ".join(reply.get("actions") or []) or "nothing"
        print(f"synsup: error: upgrade halted at {reply.get('unit')}: it did not become ready: {reply.get('error')}; "
              f"{reply.get('note')} (done: {done})", file=sys.stderr)
    return 1


def _print_plan(reply: dict[str, Any]) -> int:
    for line in reply.get("summary") or []:
        print(line)
    for line in reply.get("errors") or []:
        print(line, file=sys.stderr)
    if reply.get("errors"):
        print("synsup: error: the upgrade would be refused; nothing changed", file=sys.stderr)
        return 1
    for command in reply.get("commands") or []:
        print(f"run      {command}")
    for action in reply.get("actions") or []:
        print(action)
    print("(dry run: nothing changed)")
    return 0
