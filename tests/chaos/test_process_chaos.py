"""Chaos with the fake Synapse through the CLI: processes that escape, hang, flood, and a
daemon that dies. Each test ends with `stop` and asserts that no process is left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import REPO, alive, processes_with, wait_for

pytestmark = pytest.mark.integration


def start(deployment):
    done = deployment.start()
    assert done.returncode == 0, done.stdout + done.stderr
    return deployment


def stop_and_assert_clean(deployment, within: float = 60.0):
    began = time.monotonic()
    done = deployment.synsup("stop", timeout=within + 30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert time.monotonic() - began < within, "stop took too long"
    wait_for(lambda: not processes_with(deployment.control), timeout=10, what="every process to be gone")


def grandchild_pid(deployment, name):
    return wait_for(lambda: next((e["grandchild"] for e in deployment.events()
                                  if e["name"] == name and e["event"] == "grandchild"), None),
                    what=f"{name}'s grandchild")


def test_a_crash_is_seen_although_a_grandchild_holds_stdout(deployment):
    """Regression: a grandchild holding stdout kept a crashed pusher `ready` with a dead pid."""
    deployment.behave("pusher1", grandchild="group", crash_after=1.0)
    start(deployment)
    first = deployment.unit("pusher1")["pid"]
    grandchild = grandchild_pid(deployment, "pusher1")
    deployment.behave("pusher1")
    wait_for(lambda: deployment.unit("pusher1")["pid"] not in (None, first)
             and deployment.unit("pusher1")["state"] == "ready", timeout=15, what="pusher1 to come back")
    wait_for(lambda: not alive(grandchild), timeout=5, what="the grandchild to die with its unit")
    stop_and_assert_clean(deployment)


def test_a_setsid_grandchild_dies_with_its_unit_and_stop_returns(deployment):
    """Regression: a setsid grandchild made restart and stop hang forever."""
    deployment.behave("generic1", grandchild="setsid")
    start(deployment)
    grandchild = grandchild_pid(deployment, "generic1")
    done = deployment.synsup("restart", "generic1", timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: not alive(grandchild), timeout=5, what="the escaped grandchild to be killed")
    stop_and_assert_clean(deployment, within=30)


def test_a_stopped_unit_gets_sigcont_and_stops_in_seconds(deployment):
    start(deployment)
    os.kill(deployment.unit("generic1")["pid"], signal.SIGSTOP)
    stop_and_assert_clean(deployment, within=15)


def test_a_lost_log_dir_drops_output_and_never_blocks_the_unit(deployment, short_dir):
    log_dir = os.path.join(short_dir, "logs")
    deployment.behave("generic1", spam=65536)
    done = deployment.synsup("start", "--log-dir", log_dir, config=True)
    assert done.returncode == 0, done.stderr
    os.rename(log_dir, log_dir + ".gone")  # the log files move away; new ones cannot be created
    os.chmod(log_dir + ".gone", 0o755)
    with open(log_dir, "w"):
        pass  # a file where the dir was: ENOTDIR for every reopen
    for path in os.listdir(log_dir + ".gone"):
        os.unlink(os.path.join(log_dir + ".gone", path))
    unit = wait_for(lambda: (u := deployment.unit("generic1"))["log"] and u, timeout=30,
                    what="the lost log file to show in status")
    # the unit writes its log itself (issue 20: output that outlives the daemon): it goes on
    # writing the removed file, never blocked, and status says so
    assert unit["state"] == "ready" and "moved or removed" in unit["log"], unit
    assert "log: " in deployment.synsup("status").stdout
    stop_and_assert_clean(deployment, within=30)


def test_a_log_dir_that_cannot_be_created_is_one_line_and_starts_nothing(deployment):
    done = deployment.synsup("start", "--log-dir", "/proc/synsup-logs", config=True)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("synsup: error: cannot create log dir /proc/synsup-logs")
    assert "Traceback" not in done.stderr
    assert not processes_with(deployment.control)


def test_stop_right_after_start_stops_everything(deployment):
    """Regression: `synsup stop` 0.3 s after `synsup start` said "nothing to stop"."""
    starting = subprocess.Popen([sys.executable, "-m", "synsup", "start", "--state-dir", deployment.state_dir,
                                 "-c", deployment.config, "-a", deployment.workers_dir], env=deployment.env(),
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: os.path.exists(os.path.join(deployment.state_dir, "daemon.json")), what="daemon.json")
        done = deployment.synsup("stop")
        assert done.returncode == 0 and "nothing to stop" not in done.stdout, done.stdout
    finally:
        starting.communicate(timeout=60)
    wait_for(lambda: not processes_with(deployment.control), timeout=15, what="every process to be gone")


def test_stop_preempts_a_restart_and_nothing_is_respawned(deployment):
    """Regression: `restart generic1` during `stop` respawned generic1 after the daemon left."""
    start(deployment)
    deployment.behave("generic1", ready_delay=3)
    restart = subprocess.Popen([sys.executable, "-m", "synsup", "restart", "generic1", "--state-dir",
                                deployment.state_dir], env=deployment.env(), cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: deployment.status()["daemon"]["operation"], what="the restart to run")
    stop_and_assert_clean(deployment, within=30)
    _, err = restart.communicate(timeout=30)
    assert restart.returncode == 1 and "synsup is stopping" in err, err


def test_status_and_stop_after_the_daemon_died(deployment):
    start(deployment)
    with open(os.path.join(deployment.state_dir, "daemon.json")) as f:
        daemon = json.load(f)["pid"]
    os.kill(daemon, signal.SIGKILL)
    wait_for(lambda: not alive(daemon), what="the daemon to die")
    done = deployment.synsup("status", "--json")
    assert done.returncode == 3
    orphans = json.loads(done.stdout)["units"]
    assert {u["name"] for u in orphans} == {"redis", "main", "persister1", "persister2", "generic1", "pusher1",
                                            "sender1"}
    assert all(u["state"] == "orphaned" and u["pid"] for u in orphans)
    replaced = deployment.synsup("start", "--replace", config=True)
    assert replaced.returncode == 0, replaced.stderr
    assert not any(alive(u["pid"]) for u in orphans)
    stop_and_assert_clean(deployment)


def test_stop_stops_what_a_dead_daemon_left(deployment):
    start(deployment)
    with open(os.path.join(deployment.state_dir, "daemon.json")) as f:
        os.kill(json.load(f)["pid"], signal.SIGKILL)
    wait_for(lambda: deployment.synsup("status").returncode == 3, what="the daemon to be gone")
    done = deployment.synsup("stop", timeout=90)
    assert done.returncode == 0 and "left by a synsup daemon that is gone" in done.stdout, done.stdout
    wait_for(lambda: not processes_with(deployment.control), timeout=10, what="every process to be gone")


def test_bad_requests_get_an_error_and_the_daemon_goes_on(deployment):
    import socket
    start(deployment)
    path = os.path.join(deployment.state_dir, "synsup.sock")
    for request, expected in ((b'{"cmd": "status", "units": "main"}', "must be a list"),
                              (b'{"cmd": "status", "units": 5}', "must be a list"),
                              (b'{"cmd": "status", "units": ["mai"]}', "no unit named mai"),
                              (b'{"cmd": "restart", "force": 1}', "unknown field"),
                              (b'[1]', "not a JSON object")):
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(path)
            s.sendall(request + b"\n")
            reply = json.loads(s.makefile().readline())
        assert reply["ok"] is False and expected in reply["error"], (request, reply)
    assert deployment.synsup("status").returncode == 0
    stop_and_assert_clean(deployment)


def test_too_many_connections_are_refused_and_units_stay_healthy(deployment):
    import socket
    start(deployment)
    path = os.path.join(deployment.state_dir, "synsup.sock")
    idle = []
    try:
        for _ in range(300):
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            idle.append(s)
        s = idle[-1]
        s.settimeout(5)
        assert b"too many control connections" in s.recv(4096)
    finally:
        for s in idle:
            s.close()
    done = deployment.synsup("status")
    assert done.returncode == 0, done.stdout
    stop_and_assert_clean(deployment)


def test_stop_after_the_daemon_died_kills_what_escaped_the_groups(deployment):
    """Red team: a setsid grandchild survived `synsup stop` once its daemon was gone."""
    deployment.behave("generic1", grandchild="setsid")
    start(deployment)
    grandchild = grandchild_pid(deployment, "generic1")
    with open(os.path.join(deployment.state_dir, "daemon.json")) as f:
        os.kill(json.load(f)["pid"], signal.SIGKILL)
    wait_for(lambda: deployment.synsup("status").returncode == 3, what="the daemon to be gone")
    assert deployment.synsup("stop", timeout=90).returncode == 0
    wait_for(lambda: not alive(grandchild), timeout=10, what="the escaped grandchild to be killed")
    wait_for(lambda: not processes_with(deployment.control), timeout=10, what="every process to be gone")
