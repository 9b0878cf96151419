"""Logs that follow the admin: rotation while followed, logrotate and SIGUSR1, all units
merged, logs after the daemon stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from helpers import REPO, wait_for

from synsup.supervisor.cli.follow_logs import FollowedLog


def test_a_followed_log_continues_across_a_rename_rotation(tmp_path):
    path = tmp_path / "generic1.log"
    path.write_bytes(b"one\n")
    log = FollowedLog(str(path))
    assert log.tail(10) == b"one\n"
    with open(path, "ab") as f:
        f.write(b"two\n")
    os.rename(path, str(path) + ".1")  # logrotate's rename
    path.write_bytes(b"three\n")
    assert log.read() == b"two\nthree\n"
    with open(path, "ab") as f:
        f.write(b"four\n")
    assert log.read() == b"four\n"
    log.close()


def test_a_truncated_log_is_read_from_its_start(tmp_path):
    path = tmp_path / "main.log"
    path.write_bytes(b"a long first line\n")
    log = FollowedLog(str(path))
    log.tail(10)
    path.write_bytes(b"new\n")  # copytruncate
    assert log.read() == b"" and log.read() == b"new\n"
    log.close()


def test_all_units_merged_with_their_names(tmp_path):
    (tmp_path / "main.log").write_bytes(b"main says hi\n")
    (tmp_path / "generic1.log").write_bytes(b"generic1 says hi\n")
    done = subprocess.run([sys.executable, "-m", "synsup", "logs", "-n", "5", "--log-dir", str(tmp_path),
                           "--state-dir", str(tmp_path / "s")], capture_output=True, text=True, cwd=REPO, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["generic1 | generic1 says hi", "main     | main says hi"]


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


@pytest.mark.integration
def test_logrotate_with_sigusr1_and_logs_after_stop(deployment, short_dir):
    log_dir = os.path.join(short_dir, "unitlogs")
    done = deployment.synsup("start", "--log-dir", log_dir, config=True)
    assert done.returncode == 0, done.stderr
    with open(os.path.join(deployment.state_dir, "daemon.json")) as f:
        daemon = json.load(f)["pid"]
    unit_log = os.path.join(log_dir, "generic1.log")
    daemon_log = os.path.join(deployment.state_dir, "daemon.log")
    os.rename(unit_log, unit_log + ".1")
    os.rename(daemon_log, daemon_log + ".1")
    os.kill(daemon, signal.SIGUSR1)
    wait_for(lambda: "daemon.logs_reopened" in read(daemon_log), what="daemon.log to be reopened")
    assert deployment.synsup("restart", "generic1").returncode == 0
    wait_for(lambda: "[synsup] started pid" in read(unit_log), what="generic1's output in a new log file")
    assert deployment.synsup("reopen-logs").returncode == 0
    assert deployment.synsup("stop").returncode == 0
    done = deployment.synsup("logs", "-n", "100", "generic1")  # found through the record the daemon left
    assert done.returncode == 0 and "[synsup] started pid" in done.stdout, done.stdout + done.stderr


def test_follow_with_zero_lines_shows_only_new_output(tmp_path):
    """Regression: `synsup logs -f -n 0 UNIT` printed the whole log first."""
    path = tmp_path / "generic1.log"
    path.write_bytes(b"old 1\nold 2\n")
    log = FollowedLog(str(path))
    assert log.tail(0) == b""
    with open(path, "ab") as f:
        f.write(b"new\n")
    assert log.read() == b"new\n"
    log.close()


def test_logs_does_not_follow_a_planted_symlink_nor_hang_on_a_planted_fifo(tmp_path):
    """Another user with write access to the log dir planted main.log -> a secret file and a
    FIFO as generic1.log: logs showed the secret, then hung forever on the FIFO."""
    secret = tmp_path / "secret"
    secret.write_text("root-only token\n")
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    os.symlink(secret, log_dir / "main.log")
    os.mkfifo(log_dir / "generic1.log")
    (log_dir / "sender1.log").write_bytes(b"sender1 says hi\n")
    done = subprocess.run([sys.executable, "-m", "synsup", "logs", "-n", "5", "--log-dir", str(log_dir),
                           "--state-dir", str(tmp_path / "s")], capture_output=True, text=True, cwd=REPO, timeout=30)
    assert "token" not in done.stdout
    assert done.stdout.splitlines() == ["sender1  | sender1 says hi"]
    assert f"{log_dir}/main.log is not a regular file" in done.stderr
    assert f"{log_dir}/generic1.log is not a regular file" in done.stderr
    log = FollowedLog(str(log_dir / "main.log"))
    assert log.tail(5) == b"" and log.read() == b""
    log.close()
