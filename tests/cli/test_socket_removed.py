"""Red team: the daemon lives but its control socket was removed (a /tmp cleaner, a mistaken rm).
`status` called the live daemon's units `orphaned`; `start --replace` killed every unit of the
live daemon (which restarted them all), overwrote daemon.json with a daemon that then exited,
and the old daemon ran on, out of reach of every synsup command."""

from __future__ import annotations

import os
import time

import psutil
import pytest
from helpers import processes_with, wait_for

pytestmark = pytest.mark.integration


def test_a_daemon_without_its_socket_is_neither_replaced_nor_orphaned(running):
    pids = {u["name"]: u["pid"] for u in running.status()["units"]}
    os.unlink(os.path.join(running.state_dir, "synsup.sock"))

    done = running.synsup("status")
    assert done.returncode == 1 and "does not answer" in done.stderr and "orphaned" not in done.stderr, done.stderr

    done = running.synsup("start", "--replace", config=True)
    assert done.returncode == 1 and "does not answer" in done.stderr, done.stdout + done.stderr
    time.sleep(1.0)
    assert all(psutil.pid_exists(p) for p in pids.values() if p), "the live daemon's units were killed"

    done = running.synsup("stop")
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: not processes_with(running.control), timeout=30, what="every process to be gone")
    os.close(os.open(running.state_dir, os.O_RDONLY))  # (the `running` fixture's own stop finds nothing)
