"""The benchmarks that need real Synapse, PostgreSQL and Redis run at their smallest size and
print their figures: a broken benchmark fails the build (the others: tests/test_benchmarks.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from helpers import REPO

from e2e.conftest import _missing, skip_or_fail

pytestmark = pytest.mark.e2e
BENCH = os.path.join(REPO, "contrib", "bench")
SECONDS = r"\d+\.\d+ s"


@pytest.fixture(autouse=True)
def prerequisites():
    skip_or_fail(_missing())


def run_bench(script: str, *args: str, timeout: float = 900) -> str:
    done = subprocess.run([sys.executable, os.path.join(BENCH, script), *args], capture_output=True, text=True,
                          cwd="/", timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_check_speed():
    out = run_bench("check_speed.py", "--runs", "2")
    assert re.search(rf"synsup check, 10 Synapse processes, .* median {SECONDS}", out), out


def test_vs_synctl_prints_the_comparison_and_the_timeline():
    out = run_bench("vs_synctl.py", "--runs", "1")
    assert re.search(rf"median of 1: synsup {SECONDS}, synctl {SECONDS}: \d+\.\d+x synctl", out), out
    assert re.search(r"^  main +spawned \+ *\d+\.\d+ s +ready \+ *\d+\.\d+ s$", out, re.MULTILINE), out


def test_topology_prints_each_change_and_the_messages():
    out = run_bench("topology.py", "--rate", "2")
    assert re.search(r"^add persister3: edit -> all ready \d+\.\d+ s", out, re.MULTILINE), out
    assert re.search(r"^remove persister3: edit -> all ready \d+\.\d+ s", out, re.MULTILINE), out
    assert re.search(r"^messages sent \d+, failed client requests \d+, lost \d+, duplicated \d+$", out,
                     re.MULTILINE), out


def test_upgrade_prints_restart_and_upgrade():
    out = run_bench("upgrade.py", "--rate", "2")
    assert re.search(r"^synsup restart \(everything, in order\): total \d+\.\d+ s", out, re.MULTILINE), out
    assert re.search(r"^synsup upgrade \S+ -> \S+: total \d+\.\d+ s", out, re.MULTILINE), out
