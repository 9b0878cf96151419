"""Per-unit control and maintenance with the fake Synapse: stop/start UNIT, pause/resume,
reload --dry-run, options before the command."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest
import yaml
from helpers import REPO, wait_for

pytestmark = pytest.mark.integration


def edit_worker(deployment, name, **changes):
    deployment.workers[name].update(changes)
    with open(os.path.join(deployment.workers_dir, f"{name}.yaml"), "w") as f:
        yaml.safe_dump(deployment.workers[name], f)


def test_a_unit_stopped_by_the_admin_stays_stopped_until_started(running):
    done = running.synsup("stop", "generic1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stopped (by admin)" in done.stdout
    assert running.unit("generic1")["held"] is True
    edit_worker(running, "generic1", _fake_tags=["edited while stopped"])
    assert running.synsup("reload").returncode == 0
    assert running.synsup("restart", timeout=120).returncode == 0  # everything but generic1 restarts
    unit = running.unit("generic1")
    assert unit["state"] == "stopped" and unit["pid"] is None
    status = running.synsup("status")  # stopped by the admin is intended: not degraded, exit 0
    assert status.returncode == 0 and running.status()["daemon"]["state"] == "running", status.stdout
    done = running.synsup("start", "generic1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert running.unit("generic1")["state"] == "ready"
    assert running.synsup("status").returncode == 0


def test_stopping_a_unit_others_need_asks_for_force(running):
    done = running.synsup("stop", "main")
    assert done.returncode == 1 and "main is needed by" in done.stderr and "--force" in done.stderr
    assert running.unit("main")["state"] == "ready"
    done = running.synsup("stop", "main", "--force")
    assert done.returncode == 0, done.stderr
    assert running.unit("main")["state"] == "stopped"
    assert running.synsup("start", "main").returncode == 0


def test_stopping_one_member_of_a_sharded_group_says_what_it_means(running):
    done = running.synsup("stop", "persister1", "--force")  # the workers start after the writers
    assert done.returncode == 0, done.stderr
    assert "one member of the sharded group event_persisters" in done.stderr


def test_pause_stops_restarts_and_reloads_until_resume(running):
    assert running.synsup("pause").returncode == 0
    assert "PAUSED" in running.synsup("status").stdout
    pid = running.unit("generic1")["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: running.unit("generic1")["pid"] is None, what="generic1 to be seen dead")
    unit = running.unit("generic1")
    assert unit["state"] == "exited" and "exited (paused)" in running.synsup("status").stdout
    edit_worker(running, "sender1", _fake_tags=["edited while paused"])
    done = running.synsup("reload")
    assert done.returncode == 1 and "paused" in done.stderr
    assert running.status()["daemon"]["config_generation"] == 1
    assert running.synsup("resume").returncode == 0
    wait_for(lambda: running.unit("generic1")["state"] == "ready", what="generic1 to restart after resume")
    wait_for(lambda: running.status()["daemon"]["config_generation"] == 2, timeout=30,
             what="the change seen while paused to be applied")


def test_reload_dry_run_prints_the_plan_and_changes_nothing(running):
    before = {u["name"]: u["pid"] for u in running.status()["units"]}
    running.synsup("pause")  # keeps the watcher from applying the edit meanwhile
    edit_worker(running, "generic1", _fake_tags=["planned"])
    done = running.synsup("reload", "--dry-run")
    assert done.returncode == 0 and "restart generic1" in done.stdout, done.stdout + done.stderr
    assert re.search(r"\[generic1 down about \d+ s \(their last start\)\]", done.stdout), done.stdout  # its cost
    assert {u["name"]: u["pid"] for u in running.status()["units"]} == before
    assert running.status()["daemon"]["config_generation"] == 1


def test_options_work_before_and_after_the_command(running):
    for argv in (["--state-dir", running.state_dir, "status"], ["status", "--state-dir", running.state_dir]):
        done = subprocess.run([sys.executable, "-m", "synsup", *argv], capture_output=True, text=True,
                              env=running.env(), cwd=REPO, timeout=30)
        assert done.returncode == 0 and "generic1" in done.stdout, (argv, done.stderr)


def test_bash_completion_offers_commands_options_and_live_unit_names(running):
    script = running.synsup("completion", "bash").stdout
    env = {**running.env(), "SYNSUP_STATE_DIR": running.state_dir,
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}

    def complete(*words):
        line = " ".join(words)
        done = subprocess.run(["bash", "-c", f'{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; '
                               '_synsup; echo "${COMPREPLY[@]}"'], capture_output=True, text=True, env=env, timeout=30)
        return done.stdout.split()

    assert "restart" in complete("synsup", "res")
    assert "--dry-run" in complete("synsup", "reload", "--d")
    assert complete("synsup", "restart", "gen") == ["generic1"]


def test_an_external_unit_cannot_be_stopped_by_synsup(running):
    done = running.synsup("stop", "postgres", "--force")
    assert done.returncode == 1 and "not run by synsup (only probed)" in done.stderr
    assert running.unit("postgres")["state"] == "ready"


def test_workers_restart_and_reloads_apply_while_one_persister_is_held(running):
    """Issue 20: with persister1 held, a worker that crashed sat in `waiting (for persister1)` and every
    reload ended `partial`."""
    assert running.synsup("stop", "persister1", "--force").returncode == 0
    pid = running.unit("generic1")["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: running.unit("generic1")["pid"] not in (None, pid) and running.unit("generic1")["state"] == "ready",
             timeout=30, what="generic1 back while persister1 is held")
    edit_worker(running, "sender1", _fake_tags=["edited while persister1 is held"])
    done = running.synsup("reload")
    assert done.returncode == 0, done.stdout + done.stderr
    assert running.status()["daemon"]["last_reload"]["result"] == "applied"
    assert running.unit("persister1")["state"] == "stopped"
    assert running.synsup("start", "persister1").returncode == 0
