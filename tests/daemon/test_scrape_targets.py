"""Scrape targets from the metrics listeners: the specs, the http_sd/file_sd document, the check."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers import FAKE_SYNAPSE, REPO, modern_deployment, write_deployment

from synsup.supervisor.daemon.scrape_targets import target_groups
from synsup.units.check import check_deployment
from synsup.units.unit_specs import unit_specs


def metrics_deployment():
    shared, workers = modern_deployment()
    shared["enable_metrics"] = True
    shared["listeners"].append({"type": "metrics", "port": 9000, "bind_addresses": ["0.0.0.0"]})
    workers["persister1"]["worker_listeners"].append({"type": "metrics", "port": 9001, "bind_addresses": ["127.0.0.1"]})
    workers["generic1"]["worker_listeners"].append(
        {"type": "http", "port": 9002, "bind_addresses": ["::1"], "resources": [{"names": ["metrics"]}]})
    return shared, workers


def groups_for(tmp_path, shared, workers):
    config, workers_dir = write_deployment(str(tmp_path), shared, workers)
    result = check_deployment([config], workers_dir, sys.executable, read_version=False)
    return target_groups(unit_specs(result.deployment)), result


def test_one_target_group_per_process_with_a_metrics_listener(tmp_path):
    groups, _ = groups_for(tmp_path, *metrics_deployment())
    assert groups == [
        {"targets": ["127.0.0.1:9000"], "labels": {"instance": "main", "job": "synapse",
                                                    "worker_app": "synapse.app.homeserver",
                                                    "__metrics_path__": "/_synapse/metrics"}},
        {"targets": ["127.0.0.1:9001"], "labels": {"instance": "persister1", "job": "synapse",
                                                    "worker_app": "synapse.app.generic_worker",
                                                    "group": "event_persisters",
                                                    "__metrics_path__": "/_synapse/metrics"}},
        {"targets": ["[::1]:9002"], "labels": {"instance": "generic1", "job": "synapse",
                                               "worker_app": "synapse.app.generic_worker",
                                               "__metrics_path__": "/_synapse/metrics"}},
    ]


def test_no_targets_without_enable_metrics(tmp_path):
    shared, workers = metrics_deployment()
    del shared["enable_metrics"]
    groups, result = groups_for(tmp_path, shared, workers)
    assert groups == []
    assert any("metrics listener without `enable_metrics: true`" in f.message for f in result.warnings)


def test_check_warns_of_a_process_without_a_metrics_listener(tmp_path):
    _, result = groups_for(tmp_path, *metrics_deployment())
    missing = sorted(f.message.split(":")[0] for f in result.warnings if "no metrics listener" in f.message)
    assert missing == ["persister2", "pusher1", "sender1"]
    assert not result.errors


def test_targets_command_prints_file_sd_json(tmp_path):
    config, workers_dir = write_deployment(str(tmp_path), *metrics_deployment())
    done = subprocess.run([sys.executable, "-m", "synsup", "targets", "--format", "file_sd", "-c", config,
                           "-a", workers_dir], capture_output=True, text=True, cwd=REPO, timeout=60,
                          env={**os.environ, "PYTHONPATH": FAKE_SYNAPSE})  # the fake's config loader
    assert done.returncode == 0, done.stderr
    assert [g["labels"]["instance"] for g in json.loads(done.stdout)] == ["main", "persister1", "generic1"]


def test_targets_command_with_a_broken_config_says_why(tmp_path):
    config, workers_dir = write_deployment(str(tmp_path), *metrics_deployment())
    with open(config, "a") as f:
        f.write("listeners: [broken\n")
    done = subprocess.run([sys.executable, "-m", "synsup", "targets", "-c", config, "-a", workers_dir],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 1 and "homeserver.yaml" in done.stderr and "Traceback" not in done.stderr
