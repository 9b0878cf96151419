"""`synsup start` forks the daemon from the command, which has imported synsup and loaded and
checked the config already: no second Python start-up, import and load before Redis is spawned.
The fork keeps nothing of its caller but what a `synsup run` would have."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys

from helpers import REPO, read_text, wait_for


def test_the_daemon_is_the_start_command_forked_keeping_none_of_its_callers_files(deployment):
    read_end, write_end = os.pipe()  # as a CI runner or a shell's $(...) waits on one
    systemd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify = os.path.join(deployment.root, "notify.sock")
    systemd.bind(notify)
    try:
        done = subprocess.run([sys.executable, "-m", "synsup", "start", "-c", deployment.config, "-a",
                               deployment.workers_dir, "--state-dir", deployment.state_dir],
                              pass_fds=(write_end,), env={**deployment.env(), "NOTIFY_SOCKET": notify},
                              capture_output=True, text=True, timeout=120, cwd=REPO)
        os.close(write_end)
        assert done.returncode == 0, done.stdout + done.stderr
        # EOF once no process holds the write end: the daemon (and what it runs) never would; a
        # short-lived helper of the command may still be exiting, so within a deadline
        readable, _, _ = select.select([read_end], [], [], 10)
        assert readable and os.read(read_end, 1) == b"", "the daemon holds a file its caller passed it"
    finally:
        os.close(read_end)
    log = os.path.join(deployment.state_dir, "daemon.log")
    wait_for(lambda: "daemon.ready" in read_text(log), timeout=30, what="the daemon's READY=1 moment")
    systemd.setblocking(False)
    try:
        assert systemd.recv(4096) is None, "the daemon told the command's systemd socket"
    except BlockingIOError:
        pass  # nothing: systemd's socket is the command's, not the daemon's
    finally:
        systemd.close()
    with open(os.path.join(deployment.state_dir, "daemon.json")) as f:
        pid = json.load(f)["pid"]
    with open(f"/proc/{pid}/cmdline") as f:
        assert f.read().split("\0")[3] == "start"  # the command itself, not a new `python -m synsup run`
    assert os.getsid(pid) == pid  # a session of its own


def test_a_start_run_with_stdin_closed_still_gives_the_daemon_its_log_on_stdout_and_stderr_only(deployment):
    """Run with fd 0 closed, the command opens daemon.log as fd 0: the daemon still has /dev/null
    on 0, daemon.log on 1 and 2, and daemon.log open nowhere else (a rotated-away log is freed)."""
    done = subprocess.run([sys.executable, "-c", "import os, runpy, sys; os.close(0); sys.argv = sys.argv[1:]; "
                           "runpy.run_module('synsup', run_name='__main__')", "synsup", "start", "-c", deployment.config,
                           "-a", deployment.workers_dir, "--state-dir", deployment.state_dir],
                          env=deployment.env(), capture_output=True, text=True, timeout=120, cwd=REPO, stdin=None)
    assert done.returncode == 0, done.stdout + done.stderr
    with open(os.path.join(deployment.state_dir, "daemon.json")) as f:
        pid = json.load(f)["pid"]
    log = os.path.realpath(os.path.join(deployment.state_dir, "daemon.log"))
    fds = {int(fd): os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    assert fds[0] == os.devnull, fds
    assert fds[1] == fds[2] == log, fds
    assert [fd for fd, target in fds.items() if target == log] == [1, 2], fds
