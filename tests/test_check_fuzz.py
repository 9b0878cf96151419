"""No value of any key, in the shared config or a worker file, makes the check crash."""

from __future__ import annotations

import pytest
from helpers import modern_deployment, write_deployment

from synsup.units.check import check_deployment
from synsup.units.specs import unit_specs

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
    if result.ok:
        unit_specs(result.deployment)  # a deployment that passes must also produce specs
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
