"""Which node runs which process: one case per placement rule, as (change to a valid three-host
deployment and its cluster.yaml) -> finding, then the units each node runs."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from helpers import FAKE_SYNAPSE, listener, modern_deployment, write_deployment

from synsup.supervisor.cluster_config import read_cluster_config
from synsup.supervisor.source import Placement
from synsup.units.loader import load_deployment
from synsup.units.placement import place
from synsup.units.unit_specs import unit_specs

A, B, C = "10.0.0.1", "10.0.0.2", "10.0.0.3"


def three_hosts() -> tuple[dict, dict[str, dict], dict]:
    """main + Redis on a, the two persisters on b (placed by their instance_map hosts), the
    generic worker, federation sender and pusher on c (placed in cluster.yaml)."""
    shared, workers = modern_deployment()
    shared["listeners"][1]["bind_addresses"] = ["0.0.0.0"]
    shared["redis"]["host"] = A
    shared["instance_map"] = {"main": {"host": A, "port": 9093}, "persister1": {"host": B, "port": 9101},
                              "persister2": {"host": B, "port": 9102}}
    for name, port in (("persister1", 9101), ("persister2", 9102)):
        workers[name]["worker_listeners"] = [listener(port, "replication") | {"bind_addresses": ["0.0.0.0"]}]
    cluster = {"name": "prod", "store": {"endpoints": [f"http://{A}:2379"]},
               "nodes": {"a": {"address": A}, "b": {"address": B}, "c": {"address": C}},
               "placement": {"main": "a", "redis": "a", "generic1": "c", "sender1": "c", "pusher1": "c"}}
    return shared, workers, cluster


Change = Callable[[dict, dict, dict], Any]


def placed(tmp_path: pathlib.Path, change: Change | None = None, external_redis: bool = False) -> Placement:
    shared, workers, cluster = three_hosts()
    if change:
        change(shared, workers, cluster)
    config, workers_dir = write_deployment(str(tmp_path), shared, workers)
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump(cluster, sort_keys=False))
    loaded = load_deployment([config], workers_dir, "python-not-used")
    assert loaded.deployment is not None and loaded.findings == []
    specs = unit_specs(loaded.deployment, external_redis=external_redis)
    return place(loaded.deployment, specs, read_cluster_config(str(tmp_path / "cluster.yaml")))


def test_each_node_runs_what_placement_and_instance_map_say(tmp_path: pathlib.Path) -> None:
    result = placed(tmp_path)
    assert (result.errors, result.warnings) == ([], [])
    assert result.units == {"a": ["redis", "postgres", "main"], "b": ["persister1", "persister2"],
                            "c": ["generic1", "pusher1", "sender1"]}


def test_everything_on_one_node_may_use_loopback(tmp_path: pathlib.Path) -> None:
    def one_host(shared: dict, workers: dict, cluster: dict) -> None:
        shared["redis"]["host"] = "127.0.0.1"
        for entry in shared["instance_map"].values():
            entry["host"] = "127.0.0.1"
        cluster["placement"] = {name: "a" for name in ("main", "redis", "persister1", "persister2", "generic1",
                                                         "sender1", "pusher1")}
    result = placed(tmp_path, one_host)
    assert result.errors == [] and result.units["b"] == [] and len(result.units["a"]) == 8


def test_external_redis_is_not_placed_and_goes_with_main(tmp_path: pathlib.Path) -> None:
    result = placed(tmp_path, lambda s, w, c: c["placement"].pop("redis"), external_redis=True)
    assert result.errors == [] and result.units["a"] == ["redis", "postgres", "main"]


def _place(name: str, node: str) -> Change:
    return lambda shared, workers, cluster: cluster["placement"].__setitem__(name, node)


def _unplace(name: str) -> Change:
    return lambda shared, workers, cluster: cluster["placement"].pop(name)


def _instance_map(name: str, **entry: Any) -> Change:
    return lambda shared, workers, cluster: shared["instance_map"].__setitem__(name, entry)


def _redis(**values: Any) -> Change:
    return lambda shared, workers, cluster: shared["redis"].update(values)


ERRORS = [  # (case, change, file the finding names, its line, words of the message)
    ("unknown process", _place("persister9", "b"), "cluster.yaml", 18,
     "placement.persister9: the deployment has no process 'persister9'; its processes are redis, postgres"),
    ("placed twice", _place("persister1", "c"), "cluster.yaml", 18,
     "persister1 is placed on c, but instance_map.persister1.host 10.0.0.2 (" ),
    ("not placed", _unplace("generic1"), "cluster.yaml", 12, "generic1 is on no node: add `generic1: NODE` "
     "under placement, or give it an instance_map entry whose host is a node's address"),
    ("main not explicit", _unplace("main"), "cluster.yaml", 12, "main must be placed explicitly; add `main: NODE`"),
    ("redis not explicit", _unplace("redis"), "cluster.yaml", 12, "redis must be placed explicitly"),
    ("loopback across hosts", lambda s, w, c: (_instance_map("persister1", host="127.0.0.1", port=9101)(s, w, c),
                                               _place("persister1", "b")(s, w, c)),
     "homeserver.yaml", None, "instance_map.persister1: 127.0.0.1 is reachable from its own host only, but the "
     "processes run on 3 nodes; write the address of the node it runs on (b: 10.0.0.2)"),
    ("unix across hosts", _instance_map("main", path="/run/synapse/main.sock"), "homeserver.yaml", None,
     "instance_map.main: the UNIX socket /run/synapse/main.sock cannot be reached from another host"),
    ("legacy main endpoint on loopback", lambda s, w, c: w["generic1"].update(worker_replication_host="127.0.0.1",
                                                                             worker_replication_http_port=9093),
     "generic1.yaml", 12, "generic1: worker_replication_host 127.0.0.1 is reachable from its own host only, but "
     "generic1 runs on c and main on a; write the address of the node main runs on (a: 10.0.0.1)"),
    ("redis on localhost", _redis(host="localhost"), "homeserver.yaml", None,
     "redis: localhost is reachable from its own host only, but processes on 3 nodes use it; write the address "
     "of the node it runs on (a: 10.0.0.1)"),
]


@pytest.mark.parametrize("case, change, file, line, words", ERRORS, ids=[e[0] for e in ERRORS])
def test_a_placement_mistake_is_a_finding_at_its_key(tmp_path: pathlib.Path, case: str, change: Change, file: str,
                                                     line: int | None, words: str) -> None:
    result = placed(tmp_path, change)
    assert result.units == {}, "no placement is printed while there are errors"
    found = [f for f in result.errors if words in f.message]
    assert len(found) == 1, [f.format() for f in result.errors]
    assert found[0].file.endswith(file) and (line is None or found[0].line == line)


def test_no_replication_secret_across_hosts_is_a_warning(tmp_path: pathlib.Path) -> None:
    result = placed(tmp_path, lambda shared, workers, cluster: shared.pop("worker_replication_secret"))
    assert result.errors == [] and result.units["b"] == ["persister1", "persister2"]
    assert [(w.code, w.message[:40]) for w in result.warnings] == [
        ("no-replication-secret", "processes on nodes a, b, c replicate acr")]


def test_the_warning_is_left_out_when_quiet(tmp_path: pathlib.Path) -> None:
    shared, workers, cluster = three_hosts()
    del shared["worker_replication_secret"]
    config, workers_dir = write_deployment(str(tmp_path), shared, workers)
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump(cluster))
    loaded = load_deployment([config], workers_dir, "python-not-used")
    assert loaded.deployment is not None
    quiet = place(loaded.deployment, unit_specs(loaded.deployment), read_cluster_config(str(tmp_path / "cluster.yaml")),
                  quiet=["no-replication-secret"])
    assert quiet.warnings == []


def synsup(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": FAKE_SYNAPSE}
    return subprocess.run([sys.executable, "-m", "synsup", *args], capture_output=True, text=True, env=env,
                          timeout=60)


@pytest.fixture
def on_disk(tmp_path: pathlib.Path) -> list[str]:
    """`check` arguments for the three-host deployment and its cluster.yaml."""
    shared, workers, cluster = three_hosts()
    config, workers_dir = write_deployment(str(tmp_path), shared, workers)
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump(cluster, sort_keys=False))
    return ["check", "-c", config, "-a", workers_dir, "--cluster", str(tmp_path / "cluster.yaml")]


def test_check_with_node_prints_that_nodes_start_plan(on_disk: list[str]) -> None:
    done = synsup(*on_disk, "--node", "b")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:3] == ["node b (10.0.0.2) of cluster prod runs:", "start plan:",
                                            "  step 1: persister1, persister2"]
    assert "main" not in done.stdout.split("start plan:")[1].split("    ")[0]


def test_check_without_node_prints_every_nodes_units(on_disk: list[str]) -> None:
    done = synsup(*on_disk)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["placement (cluster prod):", "  a (10.0.0.1): redis, postgres, main",
                                        "  b (10.0.0.2): persister1, persister2",
                                        "  c (10.0.0.3): generic1, pusher1, sender1"]
    as_json = json.loads(synsup(*on_disk, "--json", "--node", "c").stdout)
    assert (as_json["ok"], as_json["node"], as_json["steps"]) == (True, "c", [["generic1", "pusher1", "sender1"]])
    assert as_json["placement"]["b"] == ["persister1", "persister2"]


def test_check_names_a_wrong_node_and_the_ones_there_are(on_disk: list[str]) -> None:
    done = synsup(*on_disk, "--node", "d")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.endswith("nodes: --node d is not a node of cluster prod; pass --node with one of a, b, c\n")
    assert len(done.stderr.splitlines()) == 1


def test_a_placement_error_stops_check_with_its_line(on_disk: list[str]) -> None:
    cluster = on_disk[-1]
    with open(cluster, "a") as f:
        f.write("  ghost: b\n")
    done = synsup(*on_disk)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"{cluster}:18: error: placement.ghost: the deployment has no process 'ghost'" in done.stderr
    with open(cluster, "a") as f:
        f.write("  ghost: z\n")
    done = synsup(*on_disk)
    assert done.stderr == f"synsup: error: {cluster}:19: placement.ghost: written twice (first on line 18); keep one\n"
