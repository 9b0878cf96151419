"""`synsup upgrade`: send the request, print its progress lines, then the outcome."""

from __future__ import annotations

import argparse
import os
import sys

from ..daemon.control_server import ControlClient, ControlTimeout
from ..errors import SynsupError
from ..protocol import Request, UpgradePlanReply, UpgradeProgress, UpgradeResult
from .commands import state_of


def upgrade(args: argparse.Namespace) -> int:
    options = vars(args)  # --python and --allow-downtime are the source's options, when it has them
    python = None
    if options.get("python"):
        python = os.path.abspath(args.python)
        if args.node is None and (not os.access(python, os.X_OK) or os.path.isdir(python)):  # --node: checked there
            raise SynsupError(f"--python {args.python}: no such interpreter; pass the python of the "
                              "virtualenv the new code is installed in (e.g. /opt/venvs/new/bin/python)")
    request = Request("upgrade", dry_run=args.dry_run, python=python,
                      allow_downtime=bool(options.get("allow_downtime")), node=args.node)
    state = state_of(args)
    try:
        with ControlClient(state.socket, timeout=args.timeout) as client:
            client.send(request)
            for reply in client.answers():
                if isinstance(reply, UpgradeProgress):
                    print(reply.line, flush=True)
                elif isinstance(reply, (UpgradeResult, UpgradePlanReply)):
                    return outcome(reply)
    except ControlTimeout:
        raise SynsupError(f"the upgrade is still running (gave up waiting after {args.timeout:g}s; "
                          "see `synsup status`)") from None
    raise SynsupError("the daemon closed the connection during the upgrade; see `synsup status`")


def outcome(reply: UpgradeResult | UpgradePlanReply) -> int:
    if isinstance(reply, UpgradePlanReply):
        return _print_plan(reply)
    if reply.result == "upgraded":
        print(f"upgraded: {reply.code_name or 'code'} {reply.from_version} -> {reply.to_version}")
        if reply.python:
            print(f"the next `synsup start` must run this code too: update --python in the unit file "
                  f"(ExecStart in synsup.service) to --python {reply.python}")
        return 0
    if reply.result == "rejected":
        for line in reply.errors:
            print(line, file=sys.stderr)
        raise SynsupError("upgrade refused; nothing changed")
    if reply.result == "failed":
        raise SynsupError(f"upgrade failed before any restart: {reply.error}; the processes keep "
                          "running the old code")
    done = "; ".join(reply.actions) or "nothing"
    raise SynsupError(f"upgrade halted at {reply.unit}: it did not become ready: {reply.error}; "
                      f"{reply.note} (done: {done})")


def _print_plan(reply: UpgradePlanReply) -> int:
    for line in reply.summary:
        print(line)
    for line in reply.errors:
        print(line, file=sys.stderr)
    if reply.errors:
        raise SynsupError("the upgrade would be refused; nothing changed")
    for command in reply.commands:
        print(f"run      {command}")
    for action in reply.actions:
        print(action)
    print("(dry run: nothing changed)")
    return 0
