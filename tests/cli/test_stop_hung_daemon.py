"""Red team: `synsup stop` against a daemon that accepts connections but never answers (SIGSTOPped,
wedged) hung forever: the client waited with no timeout."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
from helpers import REPO

from synsup.supervisor.cli import commands

pytestmark = pytest.mark.integration


def test_stop_of_a_daemon_that_never_answers_returns_an_error(short_dir):
    state = os.path.join(short_dir, "s")
    os.mkdir(state, 0o700)
    with socket.socket(socket.AF_UNIX) as listening:  # accepts (backlog), never answers
        listening.bind(os.path.join(state, "synsup.sock"))
        listening.listen(16)
        began = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "synsup", "stop", "--state-dir", state],
                              capture_output=True, text=True, timeout=commands.STOP_ANSWER_WAIT + 30, cwd=REPO)
        took = time.monotonic() - began
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith("synsup: error: the daemon") and "did not answer `stop`" in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert took < commands.STOP_ANSWER_WAIT + 10
