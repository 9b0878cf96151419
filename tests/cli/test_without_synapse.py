"""The generic CLI and daemon say nothing of Synapse (issue 17): contrib/bench/daemon.py runs
synsup over a source of benchmark units, and no help text, progress line, status or log line
it prints names Synapse: whatever is Synapse's comes from the source."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import REPO

pytestmark = pytest.mark.integration
BENCH_DAEMON = os.path.join(REPO, "contrib", "bench", "daemon.py")
HELP = (["--help"], ["start", "--help"], ["upgrade", "--help"], ["stop", "--help"], ["completion", "bash"])
LIFE = (["start", "--bench-units", "2"], ["status"], ["upgrade"], ["stop"])


def bench(state_dir: str, *args: str) -> str:
    done = subprocess.run([sys.executable, BENCH_DAEMON, *args, "--state-dir", state_dir], capture_output=True,
                          text=True, cwd="/", timeout=60,
                          env={**os.environ, "PYTHONPATH": os.path.dirname(BENCH_DAEMON)})  # `python -m daemon`
    return done.stdout + done.stderr


def test_the_benchmark_source_runs_without_any_synapse_wording(short_dir):
    said = {" ".join(args): bench(short_dir, *args) for args in HELP + LIFE}
    assert "all 2 units ready" in said["start --bench-units 2"] and "stopped" in said["stop"]
    with open(os.path.join(short_dir, "daemon.log")) as f:
        said["daemon.log"] = f.read()
    assert {what: [line for line in text.splitlines() if "synapse" in line.lower()] for what, text in said.items()
            if "synapse" in text.lower()} == {}
