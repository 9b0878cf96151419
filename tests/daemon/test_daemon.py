"""The daemon through the CLI, with the fake Synapse: start order, crashes, status, stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from helpers import alive, wait_for

pytestmark = pytest.mark.integration


def test_start_order_status_and_stop(deployment):
    done = deployment.start()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all 8 units ready" in done.stdout
    assert "ready  main" in done.stdout

    status = deployment.status()
    assert {u["name"]: u["state"] for u in status["units"]} == dict.fromkeys(
        ["redis", "postgres", "main", "persister1", "persister2", "generic1", "pusher1", "sender1"], "ready")
    assert status["daemon"]["config_generation"] == 1 and status["daemon"]["pid"] > 0
    unit = deployment.unit("persister1")
    assert unit["kind"] == "worker" and unit["group"] == "event_persisters" and unit["step"] == 2
    assert unit["app"] == "synapse.app.generic_worker" and unit["last_exit"] is None
    assert deployment.unit("redis")["kind"] == "redis" and deployment.unit("main")["kind"] == "main"
    assert deployment.unit("postgres")["kind"] == "postgres" and deployment.unit("postgres")["pid"] is None

    events = deployment.events()
    ready = {e["name"]: e["t"] for e in events if e["event"] == "ready"}
    started = {e["name"]: e["t"] for e in events if e["event"] == "start"}
    writers = ("persister1", "persister2")
    for name in ("persister1", "persister2", "generic1", "pusher1", "sender1"):
        assert started[name] >= ready["main"], f"{name} started before main was ready"
    for name in ("generic1", "pusher1", "sender1"):
        assert all(started[name] >= ready[w] for w in writers), f"{name} started before the writers were ready"

    assert deployment.synsup("status").returncode == 0
    pids = [u["pid"] for u in status["units"] if u["pid"]]
    done = deployment.synsup("stop")
    assert done.returncode == 0 and "stopped" in done.stdout
    assert not any(alive(pid) for pid in pids)
    assert not any(alive(pid) for pid in [status["daemon"]["pid"]])
    assert not os.path.exists(os.path.join(deployment.state_dir, "synsup.sock"))
    assert os.listdir(os.path.join(deployment.state_dir, "notify")) == []
    stopped = [e["name"] for e in deployment.events() if e["event"] == "exit"]
    assert stopped.index("main") > max(stopped.index(n) for n in ("generic1", "pusher1", "sender1", *writers))
    assert deployment.synsup("status").returncode == 3
    again = deployment.synsup("stop")
    assert again.returncode == 0 and "not running" in again.stdout


def test_crash_is_restarted_with_a_new_pid(deployment):
    assert deployment.start().returncode == 0
    old = deployment.unit("persister1")["pid"]
    os.kill(old, signal.SIGKILL)
    unit = wait_for(lambda: (u := deployment.unit("persister1"))["state"] == "ready" and u["pid"] != old and u,
                    what="persister1 back with a new pid")
    assert unit["restarts"] == 1
    assert unit["last_exit"]["signal"] == "SIGKILL" and unit["last_exit"]["code"] is None
    assert unit["error"].startswith("killed by SIGKILL") and "out of memory" not in unit["error"]
    others = [e for e in deployment.events() if e["event"] == "start" and e["name"] == "generic1"]
    assert len(others) == 1, "a writer's crash must not restart other workers"


def test_already_running_and_restart_unit(deployment):
    assert deployment.start().returncode == 0
    again = deployment.start()
    assert again.returncode == 0 and "already running" in again.stdout
    old = deployment.unit("generic1")["pid"]
    done = deployment.synsup("restart", "generic1")
    assert done.returncode == 0, done.stderr
    assert deployment.unit("generic1")["pid"] != old
    assert deployment.synsup("restart", "nosuch").returncode == 1


def test_failed_start_names_the_unit_and_why(deployment):
    deployment.behave("generic1", refuse=True)
    done = deployment.start()
    assert done.returncode == 1
    assert "unit generic1 failed" in done.stderr
    assert "exited with code 1" in done.stderr and "refusing to start as asked" in done.stderr
    status = deployment.synsup("status")
    assert status.returncode == 1 and "failed" in status.stdout
    assert deployment.unit("persister1")["state"] == "ready"


def test_config_error_starts_nothing(deployment):
    deployment.workers["generic1"]["worker_app"] = "synapse.app.bogus"
    deployment.write()
    done = deployment.start()
    assert done.returncode == 1 and "generic1.yaml" in done.stderr and ": error: " in done.stderr
    assert deployment.events() == []
    assert deployment.synsup("status").returncode == 3


def test_logs_command(deployment):
    assert deployment.start().returncode == 0
    done = deployment.synsup("logs", "-n", "5", "main")
    assert done.returncode == 0 and "fake synapse main ready" in done.stdout
    assert deployment.synsup("logs", "nosuch").returncode == 1


def test_leftover_processes_no_unit_can_adopt_refuse_a_second_daemon(deployment):
    """A new daemon adopts what an earlier one left (tests/test_adoption.py), but a process whose
    unit is gone from the config (or runs another command now) is no one's to adopt: refused."""
    assert deployment.start().returncode == 0
    status = deployment.status()
    os.kill(status["daemon"]["pid"], signal.SIGKILL)
    wait_for(lambda: not alive(status["daemon"]["pid"]), what="daemon gone")
    os.unlink(os.path.join(deployment.workers_dir, "generic1.yaml"))
    try:
        done = deployment.start()
        assert done.returncode == 1
        assert "still run" in done.stderr and f"generic1 (pid {deployment_pid(status, 'generic1')})" in done.stderr
        assert "main (pid" not in done.stderr  # adoptable: not in the way
    finally:
        for unit in (u for u in status["units"] if u["pid"]):
            try:
                os.killpg(unit["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass


def deployment_pid(status, name):
    return next(u["pid"] for u in status["units"] if u["name"] == name)


def test_socket_refuses_another_uid(deployment):
    assert deployment.start().returncode == 0
    if os.getuid() != 0:
        pytest.skip("needs root to act as another uid")
    sock = os.path.join(deployment.state_dir, "synsup.sock")
    assert os.stat(sock).st_mode & 0o777 == 0o600 and os.stat(deployment.state_dir).st_mode & 0o777 == 0o700
    os.chmod(os.path.dirname(deployment.state_dir), 0o755)
    os.chmod(deployment.state_dir, 0o755)
    os.chmod(os.path.join(deployment.state_dir, "synsup.sock"), 0o666)
    code = (
        "import os, socket, sys\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
        "s.sendall(b'{\"cmd\": \"status\"}\\n'); print(s.makefile().readline())\n"
    )
    done = subprocess.run([sys.executable, "-c", code, os.path.join(deployment.state_dir, "synsup.sock")],
                          capture_output=True, text=True, timeout=30)
    assert "uid 65534 may not control this synsup daemon" in done.stdout, done.stderr
    for command in ("status", "restart", "reload"):  # the real client: one line, exit 1, every time
        refused = subprocess.run(
            [sys.executable, "-c", "import os, sys; from synsup.__main__ import main; "
             "os.setgid(65534); os.setuid(65534); sys.exit(main(sys.argv[1:]))", command,
             "--state-dir", deployment.state_dir], capture_output=True, text=True, timeout=30, cwd="/")
        assert refused.returncode == 1, (command, refused.stdout, refused.stderr)
        assert refused.stderr.strip().splitlines() == [  # the client trusts no state dir of another uid
            f"synsup: error: state dir {deployment.state_dir} is owned by uid 0 (root), not by uid 65534 (nobody): "
            "not ours: run synsup as its owner, remove it if you did not make it, or pass --state-dir DIR (a "
            "directory of your own, mode 0700) or set SYNSUP_STATE_DIR"]
    assert deployment.synsup("status").returncode == 0


def test_restart_everything_in_order(deployment):
    assert deployment.start().returncode == 0
    before = {u["name"]: u["pid"] for u in deployment.status()["units"]}
    restarted_at = __import__("time").time()
    done = deployment.synsup("restart")
    assert done.returncode == 0, done.stderr
    after = {u["name"]: u["pid"] for u in deployment.status()["units"]}
    assert all(after[n] != before[n] for n in before if before[n]), "every unit gets a new process"
    events = [e for e in deployment.events() if e["t"] >= restarted_at]
    exits = [e["name"] for e in events if e["event"] == "exit"]
    starts = {e["name"]: e["t"] for e in events if e["event"] == "start"}
    last_exit = max(e["t"] for e in events if e["event"] == "exit")
    assert exits.index("main") > exits.index("generic1"), "workers stop before main"
    assert min(starts.values()) > last_exit, "everything stops before anything starts again"
    assert starts["generic1"] > starts["main"]


def test_rolling_restart_one_unit_at_a_time_keeps_redis(deployment):
    """Issue 22: `restart --rolling`: each unit stops only once the one before it is ready again;
    Redis keeps its process."""
    assert deployment.start().returncode == 0
    before = {u["name"]: u["pid"] for u in deployment.status()["units"]}
    restarted_at = __import__("time").time()
    done = deployment.synsup("restart", "--rolling")
    assert done.returncode == 0, done.stderr
    after = {u["name"]: u["pid"] for u in deployment.status()["units"]}
    assert after["redis"] == before["redis"]
    assert all(after[n] != before[n] for n in before if before[n] and n != "redis")
    events = [e for e in deployment.events() if e["t"] >= restarted_at and e["event"] in ("exit", "ready")]
    for earlier, later in zip(events, events[1:]):
        if earlier["event"] == "exit":  # a unit's exit is followed by its own ready, before any other exit
            assert later == {**later, "name": earlier["name"], "event": "ready"}, (earlier, later)
    exits = [e["name"] for e in events if e["event"] == "exit"]
    assert len(exits) == len([n for n in before if before[n] and n != "redis"])
    assert exits.index("main") < exits.index("generic1"), "dependency order: main first"


def test_logs_follow(deployment):
    assert deployment.start().returncode == 0
    import threading

    from helpers import REPO
    follow = subprocess.Popen([sys.executable, "-m", "synsup", "logs", "-f", "-n", "1", "--state-dir",
                               deployment.state_dir, "generic1"], stdout=subprocess.PIPE, text=True,
                              cwd=REPO, env=deployment.env())
    deadline = threading.Timer(30, follow.kill)  # a missing line fails the test instead of hanging it
    deadline.start()
    try:
        assert "fake synapse generic1 ready" in follow.stdout.readline()
        os.kill(deployment.unit("generic1")["pid"], signal.SIGKILL)
        lines = [follow.stdout.readline() for _ in range(2)]
        assert "killed by SIGKILL" in "".join(lines)
    finally:
        deadline.cancel()
        follow.kill()
        follow.wait()
        follow.stdout.close()


def test_start_on_a_tty_shows_a_live_progress_line(deployment):
    import pty

    from helpers import REPO
    controller, terminal = pty.openpty()
    try:
        done = subprocess.run([sys.executable, "-m", "synsup", "start", "--state-dir", deployment.state_dir,
                               "-c", deployment.config, "-a", deployment.workers_dir],
                              stdout=terminal, stderr=subprocess.DEVNULL, env=deployment.env(), cwd=REPO, timeout=120)
        os.close(terminal)
        terminal = -1
        output = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    text = output.decode(errors="replace")
    assert done.returncode == 0
    assert "ready]" in text and "\r" in text, "a progress line rewritten in place"
    assert "all 8 units ready" in text


def test_start_waits_for_postgres_and_goes_on_when_it_answers(deployment):
    from helpers import REPO, fake_postgres
    deployment.postgres.close()
    os.unlink(os.path.join(deployment.shared["database"]["args"]["host"], ".s.PGSQL.5432"))
    argv = [sys.executable, "-m", "synsup", "start", "--state-dir", deployment.state_dir,
            "-c", deployment.config, "-a", deployment.workers_dir]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=deployment.env(), cwd=REPO) as start:
        assert start.stdout is not None
        first = start.stdout.readline()
        pg_dir = deployment.shared["database"]["args"]["host"]
        assert first.strip() == f"waiting for postgres at unix:{pg_dir}/.s.PGSQL.5432"
        assert deployment.unit("main")["pid"] is None, "main started before postgres answered"
        deployment.postgres = fake_postgres(pg_dir)
        out, err = start.communicate(timeout=60)
    assert start.returncode == 0, out + err
    assert "all 8 units ready" in out
