"""`synsup top`: the status table with memory and CPU, redrawn every 2 s until interrupted.
On a terminal it redraws in place; otherwise it prints one block per refresh."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TextIO

from ..daemon.control_server import ControlClient
from ..protocol import Request, StatusReply
from .commands import state_of
from .render import status_table

CLEAR = "\x1b[H\x1b[2J"


def top(args: argparse.Namespace, out: TextIO | None = None, rounds: int | None = None) -> int:
    out = out or sys.stdout
    state = state_of(args)
    live = out.isatty()
    done = 0
    while rounds is None or done < rounds:
        with ControlClient(state.socket) as client:
            reply = client.ask(Request("status"), StatusReply)
        out.write((CLEAR if live else "") + status_table(reply, time.time()) + "\n" + ("" if live else "\n"))
        out.flush()
        done += 1
        if rounds is None or done < rounds:
            time.sleep(max(0.1, args.interval))
    return 0
