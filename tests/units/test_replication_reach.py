"""replication_reach: each process with an instance_map entry is checked the way its peers
reach it: that address, Synapse's replication endpoint, the deployment's secret."""

from __future__ import annotations

from helpers import legacy_deployment, modern_deployment, write_deployment

from synsup.units.loader import load_deployment
from synsup.units.replication_reach import REPLICATION_CHECK_PATH
from synsup.units.unit_specs import unit_specs


def _specs(tmp_path, shared, workers):
    config, workers_dir = write_deployment(str(tmp_path), shared, workers)
    deployment = load_deployment([config], workers_dir, "/opt/venv/bin/python").deployment
    return {s.name: s for s in unit_specs(deployment)}


def test_each_instance_map_entry_is_checked_at_its_address_with_the_shared_secret(tmp_path):
    shared, workers = modern_deployment([8008, 9093, 9101, 9102, 8081, 6379])
    specs = _specs(tmp_path, shared, workers)
    (main,) = specs["main"].peer_checks
    assert main.route == "instance_map.main"
    assert (main.probe.host, main.probe.port, main.probe.url_path) == ("127.0.0.1", 9093, REPLICATION_CHECK_PATH)
    assert main.probe.headers == (("Authorization", "Bearer secret"),)
    assert "Bearer" not in repr(main)  # status, logs and plans never show the secret
    assert specs["persister2"].peer_checks[0].probe.port == 9102
    assert specs["generic1"].peer_checks == () and specs["redis"].peer_checks == ()


def test_the_advice_names_the_entry_and_the_listener_to_point_it_at(tmp_path):
    specs = _specs(tmp_path, *modern_deployment([8008, 9093, 9101, 9102, 8081, 6379]))
    check = specs["persister1"].peer_checks[0]
    assert check.advice_for("unreachable") == ("every replication request to persister1 fails; point "
                                               "instance_map.persister1 at persister1's replication listener "
                                               "(127.0.0.1:9101) as the other processes reach it")
    assert "worker_replication_secret" in check.advice_for("500")
    assert check.advice_for("418") == check.advice_for("")


def test_a_secret_file_is_read_as_synapse_reads_it_and_no_secret_sends_no_header(tmp_path):
    shared, workers = modern_deployment()
    del shared["worker_replication_secret"]
    assert _specs(tmp_path / "none", shared, workers)["main"].peer_checks[0].probe.headers == ()
    (tmp_path / "secret").write_text("from-a-file\n")
    shared["worker_replication_secret_path"] = str(tmp_path / "secret")
    main = _specs(tmp_path / "file", shared, workers)["main"].peer_checks[0]
    assert main.probe.headers == (("Authorization", "Bearer from-a-file"),)


def test_a_single_process_deployment_is_not_checked(tmp_path):
    shared, _ = modern_deployment()
    shared.pop("stream_writers"), shared.pop("federation_sender_instances"), shared.pop("pusher_instances")
    shared["instance_map"] = {"main": shared["instance_map"]["main"]}
    assert _specs(tmp_path, shared, {})["main"].peer_checks == ()


def test_in_the_v1_66_dialect_main_is_checked_where_the_workers_reach_it(tmp_path):
    specs = _specs(tmp_path, *legacy_deployment())
    (main,) = specs["main"].peer_checks  # every worker says the same address: one check
    assert (main.probe.host, main.probe.port) == ("127.0.0.1", 9093)
    assert main.route.endswith("'s worker_replication_host/_http_port")
    assert main.probe.headers == (("Authorization", "Bearer secret"),)
