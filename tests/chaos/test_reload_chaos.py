"""Chaos in reloads with the fake Synapse: a unit that fails mid-plan, slow operations, files
written in pieces or in bursts, directories that move, a worker that stops answering."""

from __future__ import annotations

import os
import shutil
import signal
import time

import pytest
import yaml
from helpers import read_text, wait_for

pytestmark = pytest.mark.integration


def write_shared(deployment):
    with open(deployment.config, "w") as f:
        yaml.safe_dump(deployment.shared, f)


def daemon(deployment):
    return deployment.status()["daemon"]


def test_a_unit_failing_mid_plan_halts_rolls_back_and_the_fix_applies(running):
    """Regression: main failing in a rolling restart left the daemon `reloading` forever."""
    pids = {u["name"]: u["pid"] for u in running.status()["units"]}
    running.behave("main", refuse=True)  # the new config "breaks" main
    running.shared["_fake_tags"] = ["broken"]
    write_shared(running)
    done = running.synsup("reload", timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "reload partial: main did not become ready" in done.stderr
    last = daemon(running)["last_reload"]
    assert last["result"] == "partial" and last["unit"] == "main"
    assert daemon(running)["config_generation"] == 1
    after = {u["name"]: u["pid"] for u in running.status()["units"]}
    assert all(after[n] == pids[n] for n in pids if n not in ("main", "redis")), "the rest kept running"
    assert "partial" in running.synsup("status").stdout
    running.behave("main")  # the admin fixes it
    running.shared["_fake_tags"] = ["fixed"]
    write_shared(running)
    done = running.synsup("reload", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: all(u["state"] == "ready" for u in running.status()["units"]), timeout=30,
             what="all units ready")
    assert daemon(running)["config_generation"] == 2 and daemon(running)["state"] == "running"


def test_the_watcher_does_not_retry_a_change_a_reload_already_read(running):
    """CI stop 27: the watcher's reload of the edit `synsup reload` had just rolled back came
    after it, restarted main with the broken config again, and applied it once main was fixed."""
    running.behave("main", refuse=True)
    running.shared["_fake_tags"] = ["broken"]
    write_shared(running)
    assert running.synsup("reload", timeout=120).returncode == 1
    main = running.unit("main")["pid"]
    log = os.path.join(running.state_dir, "daemon.log")
    wait_for(lambda: "reload.files_already_read" in read_text(log), timeout=30,
             what="the watcher to see the change was read already")
    assert "reload.files_changed" not in read_text(log)
    assert running.unit("main")["pid"] == main and daemon(running)["operation"] is None
    running.behave("main")
    running.shared["_fake_tags"] = ["fixed"]
    write_shared(running)  # a new edit is still the watcher's to apply
    wait_for(lambda: daemon(running)["config_generation"] == 2, timeout=30, what="the fix to be applied")


def test_reload_gives_up_waiting_after_its_timeout(running):
    running.behave("generic1", ready_delay=4)
    running.workers["generic1"]["worker_log_level"] = "DEBUG"
    with open(os.path.join(running.workers_dir, "generic1.yaml"), "w") as f:
        yaml.safe_dump(running.workers["generic1"], f)
    began = time.monotonic()
    done = running.synsup("reload", "--timeout", "1", timeout=60)
    assert done.returncode == 1 and "still running: reload" in done.stderr, done.stderr
    assert time.monotonic() - began < 10
    wait_for(lambda: daemon(running)["operation"] is None, timeout=30, what="the reload to finish")


def test_a_file_written_in_two_chunks_is_read_once_complete(running):
    """Regression: a half-written homeserver.yaml was applied (persisters stopped, no stream_writers)."""
    text = yaml.safe_dump({**running.shared, "_fake_tags": ["complete"]})
    cut = text.index("stream_writers")
    with open(running.config, "w") as f:
        f.write(text[:cut])
        f.flush()
        time.sleep(0.5)  # the writer pauses mid-file: what a slow editor or Ansible does
        f.write(text[cut:])
    wait_for(lambda: daemon(running)["config_generation"] == 2, timeout=30, what="one reload")
    time.sleep(2.5)  # nothing else may follow: the settle time has long passed
    status = daemon(running)
    assert status["config_generation"] == 2 and status["reload_error"] is None
    assert not any("stop persister" in a for a in status["last_reload"]["actions"])


def test_a_burst_of_edits_is_one_reload(running):
    path = os.path.join(running.workers_dir, "generic1.yaml")
    for i in range(50):
        running.workers["generic1"]["_fake_tags"] = [f"edit{i}"]
        with open(path, "w") as f:
            yaml.safe_dump(running.workers["generic1"], f)
        time.sleep(0.04)
    wait_for(lambda: daemon(running)["config_generation"] == 2, timeout=30, what="the reload")
    time.sleep(2.5)
    assert daemon(running)["config_generation"] == 2


def test_a_worker_dir_moved_away_and_back_is_watched_again(running):
    away = running.workers_dir + ".away"
    shutil.move(running.workers_dir, away)
    time.sleep(1.5)  # the watcher notices the dir is gone (a reload now is rejected or empty)
    shutil.move(away, running.workers_dir)
    wait_for(lambda: daemon(running)["operation"] is None, timeout=30, what="reloads to finish")
    time.sleep(1.5)
    before = daemon(running)["config_generation"]
    running.workers["generic1"]["_fake_tags"] = ["after the move"]
    with open(os.path.join(running.workers_dir, "generic1.yaml"), "w") as f:
        yaml.safe_dump(running.workers["generic1"], f)
    wait_for(lambda: daemon(running)["config_generation"] > before and
             any("generic1" in a for a in daemon(running)["last_reload"]["actions"]),
             timeout=30, what="the edit after the move to be applied")


def test_a_stopped_worker_without_listeners_is_restarted(running):
    """Regression: a SIGSTOPped pusher stayed `ready` forever (no HTTP listener to probe)."""
    pid = running.unit("pusher1")["pid"]
    os.kill(pid, signal.SIGSTOP)
    began = time.monotonic()
    wait_for(lambda: running.unit("pusher1")["pid"] not in (None, pid) and
             running.unit("pusher1")["state"] == "ready", timeout=45, what="pusher1 to be restarted")
    assert time.monotonic() - began < 45


def test_a_unit_that_was_failing_already_does_not_make_a_reload_partial(deployment):
    """Red team: one unit already failed halted every shared-key reload as partial."""
    deployment.behave("pusher1", refuse=True)
    assert deployment.start().returncode == 1  # pusher1 never becomes ready
    deployment.shared["_fake_tags"] = ["a shared edit"]
    write_shared(deployment)
    done = deployment.synsup("reload", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert daemon(deployment)["config_generation"] == 2
    assert deployment.synsup("stop", timeout=120).returncode == 0



def test_a_unit_failed_by_its_config_is_tried_again_when_a_fix_is_accepted(deployment):
    """Issue 22: a unit `failed` because of its (log) config was only sent SIGHUP by the reload that
    fixed it, and waited out its cool-down."""
    log_config = os.path.join(deployment.root, "pusher1.log.yaml")
    with open(log_config, "w") as f:
        f.write("version: 1\n_fake_refuse: broken\n")
    deployment.workers["pusher1"]["worker_log_config"] = log_config
    deployment.write()
    assert deployment.start().returncode == 1  # pusher1 never becomes ready
    assert deployment.unit("pusher1")["state"] == "failed"
    with open(log_config, "w") as f:
        f.write("version: 1\n")
    wait_for(lambda: deployment.unit("pusher1")["state"] == "ready", timeout=30, what="pusher1 ready after the fix")
    assert deployment.synsup("stop", timeout=120).returncode == 0
