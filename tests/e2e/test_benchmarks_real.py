"""The benchmarks that need real Synapse, PostgreSQL and Redis run at their smallest size and
print their figures: a broken benchmark fails the build (the others: tests/test_benchmarks.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from helpers import REPO, binary

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
    assert re.search(rf"^floor \(Synapse's CPU seconds during synsup's start / \d+ cores\), median: {SECONDS} = "
                     r"\d+\.\d+x synctl", out, re.MULTILINE), out
    assert re.search(r"^  cores busy with Synapse, per 0.5 s \(\d+ cores\):( \d+\.\d)+$", out, re.MULTILINE), out
    assert re.search(r"^machine busy during synsup's start \(.*\), median: \d+% of \d+ cores$", out, re.MULTILINE), out
    assert re.search(r"machine busy \d+% \(synsup\) / \d+% \(synctl\)", out), out


FIGURES = r" \d+\.\d+ s, failed client requests \d+, longest stall \d+\.\d+ s"


def test_topology_through_haproxy_prints_each_change_and_the_messages():
    binary("haproxy")
    out = run_bench("topology.py", "--rate", "2", "--proxy", "haproxy")
    assert "proxy haproxy" in out.splitlines()[0], out
    for change in (r"synsup restart generic1: took", r"kill -9 generic1: kill -> back and ready",
                   r"add persister3: edit -> all ready", r"remove persister3: edit -> all ready"):
        assert re.search(rf"^{change}{FIGURES}", out, re.MULTILINE), out
    assert re.search(r"^messages sent \d+, failed client requests \d+, lost \d+, duplicated \d+$", out,
                     re.MULTILINE), out


def test_upgrade_through_nginx_prints_restart_and_upgrade():
    binary("nginx")
    out = run_bench("upgrade.py", "--rate", "2", "--proxy", "nginx")
    assert "proxy nginx" in out.splitlines()[0], out
    assert re.search(rf"^synsup restart \(everything, in order\): total{FIGURES}", out, re.MULTILINE), out
    assert re.search(rf"^synsup restart --rolling: total{FIGURES}", out, re.MULTILINE), out
    assert re.search(rf"^synsup upgrade \S+ -> \S+: total{FIGURES}", out, re.MULTILINE), out
