"""Reloads with the fake Synapse: file watching, SIGHUP, `synsup reload`, coordinated groups."""

from __future__ import annotations

import os
import signal

import pytest
import yaml
from helpers import free_ports, listener, wait_for, worker

pytestmark = pytest.mark.integration


def pids(deployment):
    return {u["name"]: u["pid"] for u in deployment.status()["units"]}


def generation(deployment):
    return deployment.status()["daemon"]["config_generation"]


def edit_worker(deployment, name, **changes):
    deployment.workers[name].update(changes)
    with open(os.path.join(deployment.workers_dir, f"{name}.yaml"), "w") as f:
        yaml.safe_dump(deployment.workers[name], f)


def write_shared(deployment):
    with open(deployment.config, "w") as f:
        yaml.safe_dump(deployment.shared, f)


def test_editing_a_worker_file_restarts_only_that_unit(running):
    before = pids(running)
    edit_worker(running, "generic1", worker_log_level="DEBUG")
    wait_for(lambda: generation(running) == 2, what="the file change to be applied")
    after = pids(running)
    assert after["generic1"] != before["generic1"]
    assert {n: p for n, p in after.items() if n != "generic1"} == {n: p for n, p in before.items() if n != "generic1"}
    daemon = running.status()["daemon"]
    assert daemon["reload_error"] is None
    assert any(a.startswith("restart generic1") for a in daemon["last_reload"]["actions"])


def test_adding_an_event_persister_is_coordinated(running):
    (port,) = free_ports(1)
    edited_at = __import__("time").time()
    running.shared["instance_map"]["persister3"] = {"host": "127.0.0.1", "port": port}
    running.shared["stream_writers"]["events"].append("persister3")
    write_shared(running)  # alone it is rejected: persister3 is no process yet
    running.workers["persister3"] = worker("persister3", listener(port, "replication"))
    running.write()
    wait_for(lambda: len(units := running.status()["units"]) == 9 and all(u["state"] == "ready" for u in units),
             timeout=60, what="persister3 and everything else ready")
    wait_for(lambda: running.status()["daemon"]["reload_error"] is None, what="no reload error")

    events = [e for e in running.events() if e["t"] >= edited_at]
    old_set, new_set = ("persister1", "persister2"), ("persister1", "persister2", "persister3")
    old_exits = [e["t"] for e in events if e["event"] == "exit" and e["name"] in old_set]
    new_starts = [e["t"] for e in events if e["event"] == "start" and e["name"] in new_set]
    assert len(old_exits) == 2 and len(new_starts) >= 3
    assert max(old_exits) < min(new_starts), "an old-set persister ran while a new-set one started"
    last_start = {}
    for e in running.events():
        if e["event"] == "start":
            last_start[e["name"]] = e
    for name in ("main", "persister1", "persister2", "persister3", "generic1", "pusher1", "sender1"):
        assert last_start[name]["events_writers"] == list(new_set), name


def test_removing_a_worker_stops_it(running):
    pid = running.unit("generic1")["pid"]
    os.unlink(os.path.join(running.workers_dir, "generic1.yaml"))
    wait_for(lambda: "generic1" not in pids(running), what="generic1 gone from status")
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_broken_edit_changes_nothing_and_is_reported(running):
    before = pids(running)
    with open(os.path.join(running.workers_dir, "generic1.yaml"), "w") as f:
        f.write("worker_app: [unclosed\n")
    wait_for(lambda: running.status()["daemon"]["reload_error"], what="the reload error in status")
    errors = running.status()["daemon"]["reload_error"]
    assert "generic1.yaml" in errors[0] and "not valid YAML" in errors[0]
    done = running.synsup("reload")
    assert done.returncode == 1 and "generic1.yaml" in done.stderr
    assert "reload rejected" in running.synsup("status").stdout
    edit_worker(running, "generic1", worker_app="synapse.app.nonsense")
    done = running.synsup("reload")
    assert done.returncode == 1 and "is not one Synapse accepts" in done.stderr
    assert pids(running) == before
    assert running.status()["daemon"]["config_generation"] == 1


def test_sighup_and_reload_command(running):
    before = pids(running)
    done = running.synsup("reload")
    assert done.returncode == 0 and "no changes" in done.stdout
    running.shared["max_upload_size"] = "1M"
    write_shared(running)
    os.kill(running.status()["daemon"]["pid"], signal.SIGHUP)
    wait_for(lambda: all(pids(running)[n] != before[n] for n in before if before[n] and n != "redis"), timeout=60,
             what="every Synapse process restarted")
    assert pids(running)["redis"] == before["redis"]
    edit_worker(running, "pusher1", worker_log_level="INFO")
    done = running.synsup("reload")
    assert done.returncode == 0
    assert "restart pusher1" in done.stdout or "no changes" in done.stdout  # the watcher may have been first


def test_value_synapse_rejects_is_refused_and_nothing_restarts(running):
    before = pids(running)
    running.shared["event_cache_size"] = "lots"
    write_shared(running)
    done = running.synsup("reload")
    assert done.returncode == 1
    assert "every process: Synapse rejects this config: ValueError: invalid literal for int() with base 10: " \
           "'lots'" in done.stderr
    assert pids(running) == before
    assert running.status()["daemon"]["config_generation"] == 1


def last_start(deployment, name):
    return [e for e in deployment.events() if e["event"] == "start" and e["name"] == name][-1]


def test_a_unit_that_crashes_after_a_rejected_edit_restarts_on_the_accepted_config(running):
    """Issue 20: a crash after a rejected edit restarted the unit on the rejected files (5 exits, failed)."""
    edit_worker(running, "generic1", _fake_tags=["accepted"])
    wait_for(lambda: generation(running) == 2, what="the accepted edit to be applied")
    with open(os.path.join(running.workers_dir, "generic1.yaml"), "w") as f:
        f.write("worker_app: [unclosed\n")
    wait_for(lambda: running.status()["daemon"]["reload_error"], what="the edit to be rejected")
    pid = running.unit("generic1")["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: running.unit("generic1")["pid"] not in (None, pid) and running.unit("generic1")["state"] == "ready",
             timeout=30, what="generic1 back, ready")
    assert last_start(running, "generic1")["config"] == ["accepted"]
    daemon = running.status()["daemon"]
    assert daemon["config_on_disk"]["state"] == "rejected" and "generic1.yaml" in daemon["config_on_disk"]["errors"][0]
    assert daemon["config_on_disk"]["units_run_generation"] == 2
    text = running.synsup("status").stdout
    assert "config on disk rejected at " in text and "units run generation 2" in text, text
    config_files = running.unit("generic1")["config_files"]
    assert all(path.startswith(running.state_dir) for path in config_files), config_files


def test_a_plan_says_what_each_action_costs():
    """Issue 22: the dry run says which units go down and for about how long (their last start),
    or that a stopped unit stays down until a later action starts it."""
    from types import SimpleNamespace

    from synsup.supervisor.daemon.reloads import priced
    from synsup.supervisor.plans import Action
    units = {"main": SimpleNamespace(last_start_seconds=2.6), "p1": SimpleNamespace(last_start_seconds=None),
             "p2": SimpleNamespace(last_start_seconds=3.2), "p3": SimpleNamespace(last_start_seconds=1.0)}
    lines = priced([Action("stop", ("p1", "p2"), "event persisters changed"),
                    Action("restart", ("main",), "new map"), Action("start", ("p2", "p3"), "new set"),
                    Action("signal", ("main",), "log config")], units)  # type: ignore[arg-type]
    assert lines == [
        "stop p1, p2: event persisters changed [down until started again below: p2]",
        "restart main: new map [main down about 3 s (their last start)]",
        "start p2, p3: new set [p2, p3 down about 3 s (their last start)]",
        "signal main: log config [no restart]"]
