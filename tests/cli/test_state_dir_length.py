"""Red team: a state dir path short enough for synsup.sock but too long for notify/notify.sock made
every Synapse unit fail with "internal error: OSError: AF_UNIX path too long" after Redis had
started; it is a one-line error before anything starts."""

from __future__ import annotations

import os

import pytest
from helpers import processes_with

pytestmark = pytest.mark.integration


def test_a_state_dir_too_long_for_its_sockets_is_refused_before_anything_starts(deployment, short_dir):
    state = os.path.join(short_dir, "l" * (95 - len(short_dir) - 1))
    assert len(state) == 95 and len(os.path.join(state, "synsup.sock")) <= 107
    deployment.state_dir = state
    done = deployment.start()
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith(f"synsup: error: state dir {state} is too long") and done.stderr.count("\n") == 1
    assert not processes_with(deployment.control)
