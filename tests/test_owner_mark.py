"""Which processes are synsup's own (issue 20, critical): a private mark holding a token only this
state dir's daemons know, and descent from a process synsup recorded. The documented
SYNSUP_STATE_DIR (and SYNSUP_UNIT) in someone else's environment makes nothing ours."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import psutil
import pytest
from helpers import REPO, alive, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def exported(deployment):
    """The deployment driven from a shell that did `export SYNSUP_STATE_DIR=<its state dir>`,
    with an unrelated `sleep` started from that shell (and one naming a unit, too)."""
    base = deployment.env
    deployment.env = lambda: {**base(), "SYNSUP_STATE_DIR": deployment.state_dir}
    unrelated = [subprocess.Popen(["sleep", "600"], env={**deployment.env(), **extra})
                 for extra in ({}, {"SYNSUP_UNIT": "main"})]
    yield deployment, unrelated
    for proc in unrelated:
        proc.kill()
        proc.wait()


def kill_daemon(d):
    with open(os.path.join(d.state_dir, "daemon.json")) as f:
        pid = json.load(f)["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not alive(pid), what="the daemon to die")


def test_exported_state_dir_does_not_make_a_shells_processes_leftovers(exported):
    d, unrelated = exported
    done = d.start()
    assert done.returncode == 0, done.stdout + done.stderr  # it refused, naming the shell's own processes
    assert all(proc.poll() is None for proc in unrelated)


def test_status_lists_no_unrelated_sleep_as_orphaned(exported):
    d, unrelated = exported
    assert d.start().returncode == 0
    units = {u["pid"] for u in d.status()["units"] if u["pid"]}
    kill_daemon(d)
    done = d.synsup("status", "--json")
    assert done.returncode == 3
    orphans = {u["pid"] for u in json.loads(done.stdout)["units"]}
    assert orphans == units, "only what the daemon started is orphaned"
    assert not orphans & {p.pid for p in unrelated}


def test_stop_kills_no_unrelated_sleep_and_not_itself(exported):
    d, unrelated = exported
    assert d.start().returncode == 0
    units = [u["pid"] for u in d.status()["units"] if u["pid"]]
    kill_daemon(d)
    done = d.synsup("stop", timeout=90)
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)  # was 137: it SIGKILLed itself
    assert all(proc.poll() is None for proc in unrelated)
    wait_for(lambda: not any(alive(pid) for pid in units), timeout=10, what="every unit to be gone")


def test_foreground_start_under_the_systemd_environment_names_no_leftovers(deployment):
    """The shipped unit sets SYNSUP_STATE_DIR; `timeout` and synsup itself carried it and were
    named as leftovers, so the service never came up."""
    env = {**deployment.env(), "SYNSUP_STATE_DIR": deployment.state_dir, "SYNSUP_TIMEOUT_START_SEC": "300"}
    argv = ["timeout", "300", sys.executable, "-m", "synsup", "start", "--foreground", "-c", deployment.config,
            "-a", deployment.workers_dir, "--state-dir", deployment.state_dir]
    with subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as run:
        try:
            wait_for(lambda: run.poll() is not None or deployment.synsup("status").returncode == 0, timeout=60,
                     what="the foreground daemon to be ready")
            assert run.poll() is None, run.communicate()[1]
        finally:
            deployment.synsup("stop")
            _, err = run.communicate(timeout=60)
    assert run.returncode == 0 and "still run" not in err, err


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another uid")
def test_another_user_cannot_block_a_start(deployment):
    """`SYNSUP_STATE_DIR=<dir> sleep 600 &` by uid 65534 made root's start refuse; so does a guess
    at the private mark."""
    env = {"PATH": "/usr/bin:/bin", "SYNSUP_STATE_DIR": deployment.state_dir, "SYNSUP_UNIT": "main",
           "_SYNSUP_OWNER_MARK": "0" * 32 + "/unit/main"}
    other = subprocess.Popen(["sleep", "600"], env=env, user=65534, group=65534)
    try:
        done = deployment.start()
        assert done.returncode == 0, done.stdout + done.stderr
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_hooks_carry_no_unit_mark_and_what_they_leave_is_theirs(deployment):
    """A hook's children are killed when its run ends (a setsid'd one too); what a hook
    deliberately daemonises past that is the admin's: `synsup stop` leaves it alone."""
    pids = os.path.join(deployment.root, "hook")
    base = deployment.env
    deployment.env = lambda: {**base(), "AWS_SECRET_ACCESS_KEY": "not for hooks"}
    daemonise = ('setsid sh -c "echo \\$\\$ > {0}.tmp && mv {0}.tmp {0}; exec sleep 600" & '
                 'while [ ! -s {0} ]; do sleep 0.05; done')  # its pid, once it is in a session of its own
    hook = (f'env > "{pids}.env"; {daemonise.format(pids + ".killed")}; '
            f'env -u _SYNSUP_OWNER_MARK {daemonise.format(pids + ".kept")}')
    assert deployment.synsup("start", "--on-failure", hook, config=True).returncode == 0
    with open(os.path.join(deployment.workers_dir, "pusher1.yaml"), "w") as f:
        f.write("worker_app: [broken\n")
    assert deployment.synsup("reload").returncode == 1  # rejected: the hook runs
    kept = int(wait_for(lambda: _read(pids + ".kept"), what="the hook's run"))
    killed = int(wait_for(lambda: _read(pids + ".killed"), what="the hook's run"))
    try:
        wait_for(lambda: not alive(killed), timeout=10, what="the hook's setsid child to be killed at its end")
        env = _read(pids + ".env")
        assert "SYNSUP_EVENT=reload_rejected" in env and "/unit/" not in env
        assert "AWS_SECRET_ACCESS_KEY" not in env  # a clean environment, as a unit's
        assert alive(kept), "the hook's deliberately daemonised process was killed with its run"
        done = deployment.synsup("stop")
        assert done.returncode == 0, done.stderr
        assert alive(kept), "synsup stop killed what a hook deliberately left running"
    finally:
        os.kill(kept, signal.SIGKILL)


def _read(path):
    try:
        with open(path) as f:
            text = f.read()
        return text if text.endswith("\n") else ""
    except FileNotFoundError:
        return ""


def test_leftovers_of_a_wrapper_python_stop_in_reverse_dependency_order(deployment):
    """A shell script as --python (it execs Python, so the command line differs from the recorded
    one): the leftovers were not matched by record and all SIGKILLed in no order."""
    wrapper = os.path.join(deployment.root, "python-wrapper")
    with open(wrapper, "w") as f:
        f.write(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    os.chmod(wrapper, 0o755)
    assert deployment.synsup("start", "--python", wrapper, config=True).returncode == 0
    kill_daemon(deployment)
    done = deployment.synsup("stop", timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    exits = [e["name"] for e in deployment.events() if e["event"] == "exit"]  # a SIGTERM, answered
    assert {"main", "generic1", "persister1"} <= set(exits), exits
    assert exits.index("main") > max(exits.index(n) for n in ("generic1", "persister1", "persister2"))


def test_a_refused_second_start_leaves_nothing_running(running, short_dir):
    """The same deployment started again with another state dir was refused, but its daemon
    stayed and brought the deployment back by itself once the real one was stopped."""
    other = os.path.join(short_dir, "s2")
    done = subprocess.run([sys.executable, "-m", "synsup", "start", "--state-dir", other, "-c", running.config,
                           "-a", running.workers_dir], capture_output=True, text=True, env=running.env(), cwd=REPO,
                          timeout=120)
    assert done.returncode == 1 and "in use" in done.stderr, done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    daemons = [p for p in psutil.process_iter(["cmdline"]) if other in " ".join(p.info["cmdline"] or [])]
    assert daemons == [], "a refused start left a daemon running"
    assert not os.path.exists(os.path.join(other, "daemon.json"))


# -- the token file (no processes)

def test_the_token_is_made_once_0600_and_shared_by_later_daemons(tmp_path):
    from synsup.supervisor.owner_mark import owner_token, read_token, token_path
    from synsup.supervisor.statedir import StateDir
    state = StateDir(str(tmp_path / "s"))
    state.create()
    assert read_token(state) is None
    token = owner_token(state)
    assert len(token) == 32 and owner_token(state) == token == read_token(state)
    assert os.stat(token_path(state)).st_mode & 0o777 == 0o600
    assert [n for n in os.listdir(state.path) if n.startswith(".owner")] == []  # no temp file left


@pytest.mark.parametrize("plant", ["symlink", "mode", "content"])
def test_a_planted_token_file_is_one_line_naming_it(tmp_path, plant):
    from synsup.supervisor.owner_mark import read_token, token_path
    from synsup.supervisor.statedir import StateDir, StateDirError
    state = StateDir(str(tmp_path / "s"))
    state.create()
    path = token_path(state)
    if plant == "symlink":
        (tmp_path / "elsewhere").write_text("0" * 32 + "\n")
        os.symlink(tmp_path / "elsewhere", path)
    else:
        with open(path, "w") as f:
            f.write("0" * 32 + "\n" if plant == "mode" else "not a token\n")
        os.chmod(path, 0o644 if plant == "mode" else 0o600)
    with pytest.raises(StateDirError, match="owner.token") as e:
        read_token(state)
    assert "remove it" in str(e.value)


def test_a_process_is_ours_only_marked_with_the_token_and_descended_from_a_record():
    from synsup.supervisor.owner_mark import descends, unit_of
    token = "a" * 32
    assert unit_of({"_SYNSUP_OWNER_MARK": f"{token}/unit/main"}, token) == "main"
    assert unit_of({"_SYNSUP_OWNER_MARK": f"{'b' * 32}/unit/main"}, token) is None
    assert unit_of({"_SYNSUP_OWNER_MARK": f"{token}/hook/1"}, token) is None  # a hook is no unit
    assert unit_of({"SYNSUP_STATE_DIR": "/run/synsup", "SYNSUP_UNIT": "main"}, token) is None
    tree = {10: (1, 5.0), 11: (10, 6.0), 12: (1, 7.0)}  # 11 descends from 10; 12 was reparented to init
    assert descends(11, tree, {(10, 5.0)}) and descends(10, tree, {(10, 5.0)})
    assert not descends(12, tree, {(10, 5.0)}) and not descends(11, tree, {(10, 4.0)})  # pid reused


def test_a_command_forked_just_before_the_daemon_died_is_found_by_its_recorded_nonce(tmp_path):
    """CI found the window: the migration ran (marked) but the daemon was killed before it wrote the
    migration's pid, so nothing recorded was its ancestor and `status`/`stop` missed it. Its nonce
    is recorded before the fork; a mark with a nonce nobody recorded stays not ours."""
    from synsup.supervisor.cli.leftovers import escaped_processes, leftover_records
    from synsup.supervisor.daemon.records import Records
    from synsup.supervisor.owner_mark import VARIABLE, command_mark, new_nonce, owner_token
    from synsup.supervisor.statedir import StateDir

    state = StateDir(str(tmp_path))
    token, nonce = owner_token(state), new_nonce()
    Records(state).expect("migration", nonce, sup=_NoUnits())  # written before the fork, no pid yet
    procs = [subprocess.Popen(["sleep", "600"], env={**os.environ, VARIABLE: command_mark(token, "migration", n)})
             for n in (nonce, new_nonce())]
    try:
        found = escaped_processes(state, leftover_records(state))
        assert {pid: m.unit for pid, m in found.items()} == {procs[0].pid: "migration"}
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


class _NoUnits:
    units: dict = {}
