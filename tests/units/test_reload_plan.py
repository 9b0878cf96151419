"""plan(old, new) as a table: one row per reload rule, no processes."""

from __future__ import annotations

import os
import shutil

import pytest
from helpers import listener, modern_deployment, worker, write_deployment

from synsup.units.loader import load_deployment
from synsup.units.reload_plan import plan, snapshot_of
from synsup.units.unit_specs import unit_specs

ROLLING_ALL = [("restart", ("main",)), ("restart", ("persister1",)), ("restart", ("persister2",)),
               ("restart", ("generic1",)), ("restart", ("pusher1",)), ("restart", ("sender1",))]


def snapshot(directory, shared, workers):
    shutil.rmtree(os.path.join(directory, "workers"), ignore_errors=True)
    config, workers_dir = write_deployment(directory, shared, workers)
    result = load_deployment([config], workers_dir, "python")
    assert not result.findings, result.findings
    specs = unit_specs(result.deployment)
    return snapshot_of(result.deployment, specs)


def add_persister3(shared, workers):
    workers["persister3"] = worker("persister3", listener(9103, "replication"))
    shared["instance_map"]["persister3"] = {"host": "127.0.0.1", "port": 9103}
    shared["stream_writers"]["events"].append("persister3")


def drop_persister2(shared, workers):
    shared["stream_writers"]["events"] = ["persister1"]


def set_log_config(shared, path, text):
    with open(path, "w") as f:
        f.write(text)
    shared["log_config"] = path


CASES = [
    ("no change", lambda s, w: None, []),
    ("worker file changed", lambda s, w: w["generic1"].update(worker_log_level="DEBUG"),
     [("restart", ("generic1",))]),
    ("worker added", lambda s, w: w.update(generic2=worker("generic2", listener(8090, "client"))),
     [("start", ("generic2",))]),
    ("worker removed", lambda s, w: w.pop("generic1"), [("stop", ("generic1",))]),
    ("shared change restarts all, rolling", lambda s, w: s.update(max_upload_size="100M"), ROLLING_ALL),
    ("database moved: probe it, then every Synapse process",
     lambda s, w: s["database"]["args"].update(host="10.0.0.5"), [("restart", ("postgres",))] + ROLLING_ALL),
    ("redis section", lambda s, w: s["redis"].update(password="pw"), [("restart", ("redis",))] + ROLLING_ALL),
    ("event persister added", add_persister3,
     [("stop", ("persister1", "persister2")), ("restart", ("main",)), ("stop", ("generic1", "pusher1", "sender1")),
      ("start", ("persister1", "persister2", "persister3", "generic1", "pusher1", "sender1"))]),
    ("event persister dropped runs on as a plain worker", drop_persister2,
     [("stop", ("persister1", "persister2")), ("restart", ("main",)), ("stop", ("generic1", "pusher1", "sender1")),
      ("start", ("persister1", "generic1", "persister2", "pusher1", "sender1"))]),
    ("event persisters reordered", lambda s, w: s["stream_writers"].update(events=["persister2", "persister1"]),
     [("stop", ("persister1", "persister2")), ("restart", ("main",)), ("stop", ("generic1", "pusher1", "sender1")),
      ("start", ("persister1", "persister2", "generic1", "pusher1", "sender1"))]),
    ("federation sender added",
     lambda s, w: (w.update(sender2=worker("sender2")), s.update(federation_sender_instances=["sender1", "sender2"])),
     [("stop", ("sender1",)), ("restart", ("main",)), ("start", ("sender1", "sender2"))]),
    ("pusher added", lambda s, w: (w.update(pusher2=worker("pusher2")), s.update(pusher_instances=["pusher1", "pusher2"])),
     [("stop", ("pusher1",)), ("restart", ("main",)), ("start", ("pusher1", "pusher2"))]),
    ("typing writer moved", None,
     [("stop", ("persister1", "persister2")), ("start", ("persister1", "persister2")),
      ("restart", ("main",)), ("restart", ("generic1",)), ("restart", ("pusher1",)), ("restart", ("sender1",))]),
    ("instance_map changed",
     lambda s, w: (s["instance_map"]["persister1"].update(port=9111),
                   w["persister1"].update(worker_listeners=[listener(9111, "replication")])),
     [("stop", ("persister1",)), ("start", ("persister1",)), ("restart", ("main",)), ("restart", ("persister2",)),
      ("restart", ("generic1",)), ("restart", ("pusher1",)), ("restart", ("sender1",))]),
    ("background tasks moved", lambda s, w: s.update(run_background_tasks_on="generic1"),
     [("restart", ("main",)), ("restart", ("generic1",))]),
    ("worker file and shared change: each unit once",
     lambda s, w: (s.update(max_upload_size="1M"), w["generic1"].update(worker_log_level="INFO")), ROLLING_ALL),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_plan(tmp_path, case):
    name, mutate, expected = case
    shared, workers = modern_deployment()
    if name == "typing writer moved":
        shared["stream_writers"]["typing"] = "persister1"
        shared_new, workers_new = modern_deployment()
        shared_new["stream_writers"]["typing"] = "persister2"
    else:
        shared_new, workers_new = modern_deployment()
        mutate(shared_new, workers_new)
    old = snapshot(str(tmp_path), shared, workers)
    new = snapshot(str(tmp_path), shared_new, workers_new)
    assert [(a.verb, a.units) for a in plan(old, new)] == expected


def test_log_config_change_only_signals(tmp_path):
    shared, workers = modern_deployment()
    log = str(tmp_path / "log.yaml")
    set_log_config(shared, log, "version: 1\n")
    old = snapshot(str(tmp_path), shared, workers)
    set_log_config(shared, log, "version: 1\nroot: {level: DEBUG}\n")
    new = snapshot(str(tmp_path), shared, workers)
    actions = plan(old, new)
    assert [(a.verb, a.units) for a in actions] == [("signal", ("main",))]
    assert "SIGHUP" in actions[0].describe()


def test_old_persisters_all_stop_before_any_new_one_starts(tmp_path):
    shared, workers = modern_deployment()
    old = snapshot(str(tmp_path), shared, workers)
    add_persister3(shared, workers)
    new = snapshot(str(tmp_path), shared, workers)
    actions = plan(old, new)
    first_start = next(i for i, a in enumerate(actions) if "persister3" in a.units)
    stops = [i for i, a in enumerate(actions) if a.verb == "stop" and "persister1" in a.units]
    assert stops and max(stops) < first_start
    started = [u for a in actions if a.verb in ("start", "restart") for u in a.units]
    assert len(started) == len(set(started)), "a unit started twice"


@pytest.mark.parametrize("change", [add_persister3, drop_persister2])
def test_no_process_with_the_old_shard_map_runs_once_the_new_persisters_start(tmp_path, change):
    """Regression (issue 19): the others were restarted after the new set had started, so a
    generic worker still holding the old map forwarded an event to a persister that is no longer
    the room's writer, which refused it (Synapse's should_handle assertion: a 500 to the client,
    even through HAProxy)."""
    shared, workers = modern_deployment()
    old = snapshot(str(tmp_path), shared, workers)
    change(shared, workers)
    new = snapshot(str(tmp_path), shared, workers)
    running = set(old.specs) - {"redis", "postgres"}
    restarted: set[str] = set()
    for action in plan(old, new):
        if "persister1" in action.units and action.verb in ("start", "restart"):
            assert running - restarted == set(), f"{sorted(running - restarted)} run the old map"
        if action.verb == "stop":
            running -= set(action.units)
        else:
            restarted |= set(action.units)
            running |= set(action.units)


@pytest.mark.parametrize("option,unit", [("pusher_instances", "pusher"), ("federation_sender_instances", "sender")])
def test_dropped_sharded_member_runs_on_as_a_plain_worker(tmp_path, option, unit):
    shared, workers = modern_deployment()
    workers[f"{unit}2"] = worker(f"{unit}2")
    shared[option] = [f"{unit}1", f"{unit}2"]
    old = snapshot(str(tmp_path), shared, workers)
    shared[option] = [f"{unit}1"]
    new = snapshot(str(tmp_path), shared, workers)
    assert [(a.verb, a.units) for a in plan(old, new)] == [
        ("stop", (f"{unit}1", f"{unit}2")), ("restart", ("main",)), ("start", (f"{unit}1", f"{unit}2"))]


def test_every_configured_unit_runs_after_the_reload(tmp_path):
    """Regression (issue 12): a persister dropped from stream_writers.events was left stopped."""
    shared, workers = modern_deployment()
    old = snapshot(str(tmp_path), shared, workers)
    drop_persister2(shared, workers)
    new = snapshot(str(tmp_path), shared, workers)
    running = set(new.specs) - {"redis"}
    for action in plan(old, new):
        if action.verb == "stop":
            running -= set(action.units)
        elif action.verb in ("start", "restart"):
            running |= set(action.units)
    assert running == set(new.specs) - {"redis"}
