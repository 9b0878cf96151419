"""Trust boundaries (issue 11) with the fake Synapse and real redis-server processes: a log
file planted as a symlink, another Redis on the configured port, the same deployment under
a second state dir, and the environment units get. Each test stops what it started and
asserts that no process is left."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess

import psutil
import pytest
from helpers import processes_with, wait_for

from synsup.supervisor.engine.preflight import address_in_use

pytestmark = pytest.mark.integration
NOBODY = 65534


def stop_and_assert_clean(deployment) -> None:
    done = deployment.synsup("stop", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: not processes_with(deployment.control), timeout=15, what="every process to be gone")


def others_ready(deployment, but: str) -> bool:
    return all(u["state"] == "ready" for u in deployment.status()["units"] if u["name"] != but)


@pytest.fixture
def foreign_redis(deployment):
    """A redis-server synsup did not start, on the deployment's Redis port (as Debian's
    redis-server.service holds 6379)."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    port = deployment.ports[5]
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: address_in_use(f"127.0.0.1:{port}"), what="the foreign redis-server to listen")
        yield proc
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.skipif(os.getuid() != 0, reason="planting as another user needs root")
def test_a_log_symlink_planted_by_another_user_fails_that_unit_only(deployment, short_dir):
    """Row 1: root followed pusher1.log -> a root-only file and appended the unit's output."""
    secret_dir = os.path.join(short_dir, "root-only")
    os.mkdir(secret_dir, 0o700)
    target = os.path.join(secret_dir, "file")
    with open(target, "w") as f:
        f.write("root only\n")
    log_dir = os.path.join(short_dir, "logs")
    os.mkdir(log_dir, 0o777)
    os.chown(log_dir, NOBODY, NOBODY)  # --log-dir another user may write
    planted = os.path.join(log_dir, "pusher1.log")
    os.symlink(target, planted)
    os.lchown(planted, NOBODY, NOBODY)
    done = deployment.synsup("start", "--log-dir", log_dir, config=True)
    assert done.returncode == 1
    assert f"synsup: unit pusher1 failed: log file {planted} is a symlink; synsup never writes through one: " \
           "remove it" in done.stderr, done.stderr
    wait_for(lambda: others_ready(deployment, but="pusher1"), timeout=60, what="every other unit to be ready")
    pusher = deployment.unit("pusher1")
    assert pusher["state"] == "failed" and pusher["pid"] is None and "is a symlink" in pusher["error"]
    with open(target) as f:
        assert f.read() == "root only\n"
    assert os.path.islink(planted)
    stop_and_assert_clean(deployment)


def test_another_redis_on_the_port_fails_redis_at_once_naming_it(deployment, foreign_redis):
    """Row 8: the foreign Redis answered PING, `start` said "all 10 units ready", exit 0. Now the
    start is refused before any daemon exists (issue 20: a refused start leaves nothing running)."""
    port = deployment.ports[5]
    done = deployment.start()
    assert done.returncode == 1
    assert f"synsup: error: redis: port {port} is in use by pid {foreign_redis.pid} (redis-server)" \
        in done.stderr, done.stderr
    assert deployment.synsup("status").returncode == 3  # no daemon stayed behind
    assert [e for e in deployment.events() if e["event"] == "start"] == []  # no Synapse process started
    stop_and_assert_clean(deployment)
    assert foreign_redis.poll() is None  # never touched


def test_the_same_deployment_under_a_second_state_dir_is_refused(deployment, short_dir):
    """Row 9: the second daemon's Redis was "ready" (the first's answered); main failed later."""
    first = deployment.start()
    assert first.returncode == 0, first.stderr
    first_redis = deployment.unit("redis")["pid"]
    second = copy.copy(deployment)
    second.state_dir = os.path.join(short_dir, "s2")
    try:
        done = second.start()
        assert done.returncode == 1
        port = deployment.ports[5]
        assert f"synsup: error: redis: port {port} is in use by pid {first_redis} (redis-server)" \
            in done.stderr, done.stderr
        assert second.synsup("status").returncode == 3  # refused: no second daemon stays behind
        assert all(u["state"] == "ready" for u in deployment.status()["units"])  # the first runs on
    finally:
        stopped = second.synsup("stop", timeout=120)
        assert stopped.returncode == 0, stopped.stderr
    stop_and_assert_clean(deployment)


def test_units_get_the_env_file_and_a_clean_environment_and_status_shows_no_values(deployment, short_dir,
                                                                                  monkeypatch):
    """Row 7: every unit received synsup's whole environment."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-0451")
    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/agent.0451")
    env_file = os.path.join(short_dir, "matrix-synapse")
    with open(env_file, "w") as f:
        f.write("# as Debian's /etc/default/matrix-synapse\nSYNAPSE_CACHE_FACTOR=0.5\nTOKEN=\"token-0451\"\n")
    log_dir = os.path.join(short_dir, "logs")
    done = deployment.synsup("start", "--env-file", env_file, "--log-dir", log_dir, config=True)
    assert done.returncode == 0, done.stderr
    status = deployment.synsup("status", "--json")
    assert "token-0451" not in status.stdout and "aws-secret" not in status.stdout
    for unit in json.loads(status.stdout)["units"]:
        if unit["name"] == "redis" or unit["pid"] is None:
            continue  # redis-server writes its process title over its environment block; postgres is external
        env = psutil.Process(unit["pid"]).environ()
        assert env["TOKEN"] == "token-0451" and env["SYNAPSE_CACHE_FACTOR"] == "0.5", unit["name"]
        assert "AWS_SECRET_ACCESS_KEY" not in env and "SSH_AUTH_SOCK" not in env, unit["name"]
    assert os.stat(log_dir).st_mode & 0o777 == 0o750  # row 6: outside the state dir, not world-readable
    assert os.stat(os.path.join(log_dir, "main.log")).st_mode & 0o777 == 0o640
    stop_and_assert_clean(deployment)


def test_a_bad_env_file_line_is_one_line_and_starts_nothing(deployment, short_dir):
    env_file = os.path.join(short_dir, "env")
    with open(env_file, "w") as f:
        f.write("GOOD=1\nthis is not an assignment\n")
    done = deployment.synsup("start", "--env-file", env_file, config=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"synsup: error: {env_file}:2: expected KEY=VALUE; write " \
                                                   "KEY=VALUE, or # to comment the line out"
    assert not processes_with(deployment.control)
