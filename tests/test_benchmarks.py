"""Every benchmark in contrib/bench runs, at tiny sizes, and prints its figures: a broken
benchmark fails the build. (The ones needing real Synapse run in tests/e2e/test_benchmarks_real.py.)"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys

import pytest
from helpers import REPO, free_ports, wait_for

pytestmark = pytest.mark.integration
BENCH = os.path.join(REPO, "contrib", "bench")
NUMBER = r"-?\d+(?:\.\d+)?"


def bench_processes() -> set[int]:
    """Processes of this checkout's benchmarks (C or Python fake units, a supervisord, a daemon)."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if BENCH.encode() in f.read():
                    found.add(int(pid))
        except OSError:
            pass
    return found


def run_bench(script: str, *args: str, timeout: float = 120) -> str:
    before = bench_processes()
    done = subprocess.run([sys.executable, os.path.join(BENCH, script), *args], capture_output=True, text=True,
                          cwd="/", timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: not (bench_processes() - before), timeout=15, what=f"{script} to leave no process behind")
    return done.stdout


def test_vs_supervisord_prints_the_table_for_both():
    out = run_bench("vs_supervisord.py", "--units", "3", "--idle", "0.5", "--crashes", "2", "--stable", "0",
                    "--scrapes", "2")
    rows = re.findall(rf"^\| (.+?) \| (-|{NUMBER}) \| ({NUMBER}) \| .+ \|$", out, re.MULTILINE)
    assert len(rows) == 7, out
    assert sum(theirs != "-" for _, theirs, _ in rows) == 4, out  # respawn, spawned, idle, RSS


def test_bench_prints_every_engine_and_daemon_row_with_python_units():
    out = run_bench("bench.py", "--units", "12", "--crashes", "2", "--idle", "0.5", "--no-supervisord",
                    "--python-units")
    assert "unit.py" in out.splitlines()[0]
    rows = re.findall(rf"^\s*(\S.+?)\s+({NUMBER})\s+-\s+-", out, re.MULTILINE)
    assert len(rows) == 11, out


def test_metrics_scrape_prints_its_figures():
    out = run_bench("metrics_scrape.py", "--units", "3", "--scrapes", "2", "--idle", "0.5")
    assert re.search(rf"^/metrics: {NUMBER} ms of daemon CPU per scrape", out, re.MULTILINE), out
    assert re.search(rf"^/targets: {NUMBER} ms per request", out, re.MULTILINE), out


def test_cluster_prints_the_persister_change_on_one_host_and_on_three():
    from network_namespaces import why_no_namespaces
    reason = why_no_namespaces() or ("" if shutil.which("etcd") else "etcd (Debian's etcd-server) is not installed")
    if reason:
        pytest.skip(f"contrib/bench/cluster.py needs three network namespaces and etcd: {reason}")
    out = run_bench("cluster.py", "--repeat", "1")
    assert re.search(rf"^\| one host \| {NUMBER} \| - \| {NUMBER} \|$", out, re.MULTILINE), out
    assert re.search(rf"^\| three hosts \(etcd\) \| {NUMBER} \| {NUMBER} \| {NUMBER} \|$", out, re.MULTILINE), out


def test_crashes_kill_each_stable_unit_once_even_when_pids_wrap_around(monkeypatch):
    """A benchmark run on this machine (pid_max 32768) ended in TimeoutError: after the pids
    wrapped, the replacement child had the lowest pid, so it was killed again and again until
    its unit was in a crash loop (failed, no new child within 60 s)."""
    sys.path.insert(0, BENCH)
    try:
        import outside
    finally:
        sys.path.remove(BENCH)
    alive, replacements, killed = {32000, 32001, 32002}, iter(range(100, 200)), []

    def kill(pid, sig):
        killed.append(pid)
        alive.discard(pid)
        alive.add(next(replacements))  # the supervisor's new child: a low pid after the wrap
    monkeypatch.setattr(outside, "children", lambda pid: set(alive))
    monkeypatch.setattr(outside.os, "kill", kill)
    assert len(outside.crash_to_new_child(1, 3)) == 3
    assert killed == [32000, 32001, 32002]


def test_cluster_chaos_prints_the_matrix_as_markdown():
    out = run_bench("cluster_chaos.py", "--markdown", "--phases", "1")
    rows = re.findall(r"^\| (.+?) \| (.+?) \| (.+?) \| (yes|NO.*?) \| .+ \|$", out, re.MULTILINE)
    assert [r[0] for r in rows] == ["kill a daemon", "stop one past its lease", "kill the leader", "cut a node off",
                                    "store loses quorum", "a new persister fails to get ready"], out
    assert all(held == "yes" for *_, held in rows), out
    assert re.search(r"^6 cases: 5 done, 1 blocked with a reason, 0 neither; invariant held in 6", out, re.MULTILINE), out


def test_vs_synctl_without_postgresql_says_how_to_get_it_in_one_line():
    (port,) = free_ports(1)  # nothing listens there: PostgreSQL "down"
    before = set(glob.glob("/tmp/vs*"))
    done = subprocess.run([sys.executable, os.path.join(BENCH, "vs_synctl.py"), "--runs", "1"], capture_output=True,
                          text=True, cwd="/", timeout=120, env={**os.environ, "PGPORT": str(port)})
    assert done.returncode == 1
    assert set(glob.glob("/tmp/vs*")) <= before  # its temp dir is not left behind
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.strip().endswith("bash contrib/postgres.sh synsup synsup"), done.stderr


def test_respawn_floor_prints_the_bare_respawners_figure():
    out = run_bench("respawn_floor.py", "--units", "3", "--crashes", "2")
    assert re.search(rf"^bare respawner, 3 units: crash -> new child median {NUMBER} ms", out, re.MULTILINE), out
    assert re.search(rf"^bare respawner, 3 units spawned \(first -> last\): {NUMBER} s", out, re.MULTILINE), out
