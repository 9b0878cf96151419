"""No value of any key, in the shared config or a worker file, makes the check crash, and each
either is reported (an error that names a file and says what is wrong) or yields unit specs the
engine can run."""

from __future__ import annotations

import pytest
from helpers import modern_deployment, write_deployment

from synsup.supervisor.spec import valid_name
from synsup.units.check import check_deployment
from synsup.units.unit_specs import unit_specs

ODD_VALUES = [None, 0, -1, 70000, True, "", "x", "127.0.0.1", [], [None], [1, "a"], {}, {"a": 1},
              {"host": 5, "port": "x"}, [{"port": "x"}], [{"type": "http"}], [{"names": 3}], 1.5]
SHARED_KEYS = ["listeners", "redis", "database", "instance_map", "stream_writers", "federation_sender_instances",
               "pusher_instances", "run_background_tasks_on", "update_user_directory_from_worker",
               "notify_appservices_from_worker", "media_instance_running_background_jobs",
               "outbound_federation_restricted_to", "send_federation", "start_pushers", "log_config",
               "daemonize", "worker_replication_secret", "synctl_cache_factor", "synctl_cache_factors"]
WORKER_KEYS = ["worker_app", "worker_name", "worker_listeners", "worker_replication_host",
               "worker_replication_http_port", "worker_log_config", "worker_daemonize", "synctl_cache_factors",
               "worker_replication_secret", "instance_map", "stream_writers", "redis", "database", "pusher_instances"]


def check_with(tmp_path, shared, workers):
    config, workers_dir = write_deployment(str(tmp_path), shared, workers)
    result = check_deployment([config], workers_dir, "python", read_version=False)
    if result.ok:  # a deployment that passes must produce specs the engine can run
        specs = unit_specs(result.deployment)
        assert specs and all(valid_name(s.name) and (s.argv is None or (s.argv and all(s.argv))) for s in specs)
        assert {s.name for s in specs} >= {"main", "persister1"}
    else:
        assert all(e.severity == "error" and e.file and len(e.message) > 10 for e in result.errors)
    return result


@pytest.mark.parametrize("key", SHARED_KEYS)
def test_odd_shared_values(tmp_path, key):
    for value in ODD_VALUES:
        shared, workers = modern_deployment()
        shared[key] = value
        check_with(tmp_path, shared, workers)


@pytest.mark.parametrize("key", WORKER_KEYS)
def test_odd_worker_values(tmp_path, key):
    for value in ODD_VALUES:
        shared, workers = modern_deployment()
        workers["persister1"][key] = value
        check_with(tmp_path, shared, workers)


@pytest.mark.parametrize("key", ["events", "typing", "receipts"])
def test_odd_stream_writer_values(tmp_path, key):
    for value in ODD_VALUES:
        shared, workers = modern_deployment()
        shared["stream_writers"][key] = value
        check_with(tmp_path, shared, workers)


WRONG = [  # (where, key, value): a value of the wrong kind is an error naming the key
    ("shared", "listeners", 5), ("shared", "instance_map", []), ("shared", "stream_writers", "x"),
    ("shared", "redis", "x"),
    ("worker", "worker_app", 0), ("worker", "worker_listeners", {"a": 1}), ("worker", "worker_name", []),
    ("stream", "events", 5),
]


@pytest.mark.parametrize(("where", "key", "value"), WRONG, ids=lambda v: str(v))
def test_a_value_of_the_wrong_kind_is_reported_at_its_key(tmp_path, where, key, value):
    shared, workers = modern_deployment()
    {"shared": shared, "worker": workers["persister1"], "stream": shared["stream_writers"]}[where][key] = value
    result = check_with(tmp_path, shared, workers)
    assert not result.ok
    assert any(key in e.message or key.split("_")[-1] in e.message for e in result.errors), \
        [e.format() for e in result.errors]
