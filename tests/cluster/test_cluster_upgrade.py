"""`synsup upgrade` on a cluster node (issue 18): never a silent upgrade of one node that leaves
the cluster on two Synapse versions with nobody told. Without `--node` it is refused with the
order to run (node by node, main's node first); `--node N` given on any node is N's single-host
upgrade, carried out there (a request key), `--python` checked on N, the next start of N bound to
the new code as on one host. Three network namespaces, the fake Synapse ("a new venv" is a wrapper
script: tests/daemon/test_upgrade_operation.py).

Skipped (with the reason) without root, `ip netns` or etcd."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest
from cluster_hosts import PLACEMENT, Cluster
from etcd_server import EtcdServer, running_etcd
from helpers import Deployment, processes_with, wait_for
from network_namespaces import Network, network

from tests.daemon.test_upgrade_operation import NEW, OLD, new_python

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hosts() -> Iterator[Network]:
    yield from network(*PLACEMENT)


@pytest.fixture(scope="module")
def etcd(hosts: Network) -> Iterator[EtcdServer]:
    yield from running_etcd(host=hosts.bridge_address)


@pytest.fixture
def cluster(deployment: Deployment, hosts: Network, etcd: EtcdServer) -> Iterator[Cluster]:
    c = Cluster(deployment, hosts, etcd)
    try:
        yield c
    finally:
        c.stop()
        wait_for(lambda: not processes_with(deployment.control), timeout=20, what="every process to be gone")


def versions(cluster: Cluster) -> dict[str, str]:
    """Unit -> the Synapse version it runs, as each node's daemon says."""
    return {u["name"]: u["version"] for node in PLACEMENT for u in cluster.local(node)["units"]
            if u["kind"] in ("main", "worker") and u["pid"]}


def pids(cluster: Cluster) -> dict[str, int]:
    return {u["name"]: u["pid"] for node in PLACEMENT for u in cluster.local(node)["units"] if u["pid"]}


def schema(cluster: Cluster) -> dict[str, int]:
    with open(os.path.join(cluster.d.control, "schema.json")) as f:
        return dict(json.load(f))


def upgrade(cluster: Cluster, on: str, *args: str) -> tuple[int, str, str]:
    done = cluster.run(on, "upgrade", *args)
    print(f"(on {on}) $ synsup upgrade {' '.join(args)}  (exit {done.returncode})\n{done.stdout}{done.stderr}")
    return done.returncode, done.stdout, done.stderr


def test_upgrade_without_node_is_refused_naming_the_order_and_changes_nothing(cluster: Cluster, short_dir: str) -> None:
    cluster.start_all()
    before, db = pids(cluster), schema(cluster)
    for args in (("--python", new_python(short_dir)), ("--python", new_python(short_dir), "--dry-run")):
        code, out, err = upgrade(cluster, "c", *args)
        assert code == 1 and out == "" and err.count("\n") == 1, err
        assert "run `synsup upgrade --node a`, then `--node b`, then `--node c` (node a runs main" in err
    assert pids(cluster) == before and schema(cluster) == db and set(versions(cluster).values()) == {OLD}


def test_upgrade_node_by_node_main_first_each_carried_out_on_its_node(cluster: Cluster, short_dir: str) -> None:
    cluster.start_all()
    python = new_python(short_dir)
    code, _, err = upgrade(cluster, "b", "--node", "c", "--python", "/nonexistent/bin/python")
    assert code == 1 and "node c: --python /nonexistent/bin/python: no such interpreter on this node" in err
    code, out, _ = upgrade(cluster, "c", "--node", "a", "--python", python, "--dry-run")  # a's plan, printed on c
    assert code == 0 and "migration: yes" in out and "(dry run: nothing changed)" in out
    assert set(versions(cluster).values()) == {OLD}

    before = pids(cluster)
    code, out, err = upgrade(cluster, "c", "--node", "a", "--python", python)
    assert code == 0, err
    assert f"upgraded: Synapse {OLD} -> {NEW}" in out and f"--python {python}" in out
    assert schema(cluster)["current_version"] == 95, "a migrated the database"
    now = versions(cluster)
    assert now["main"] == NEW and {now[u] for u in PLACEMENT["b"] + PLACEMENT["c"]} == {OLD}, "a only"
    assert all(pids(cluster)[u] == before[u] for u in PLACEMENT["b"] + PLACEMENT["c"])

    for node, on in (("b", "a"), ("c", "b")):
        code, out, err = upgrade(cluster, on, "--node", node, "--python", python)
        assert code == 0 and f"upgraded: Synapse {OLD} -> {NEW}" in out, err
    assert set(versions(cluster).values()) == {NEW}
    wait_for(lambda: cluster.status_when(lambda code, r: code == 0), timeout=20, what="every unit ready")

    # c's next start runs the code its upgrade installed (recorded in c's state dir), as on one host
    assert cluster.run("c", "stop", "--local").returncode == 0
    refused = cluster.start("c")
    output = refused.communicate(timeout=60)[0]
    assert refused.returncode == 1 and f"--python {python}" in output, output
    back = cluster.start("c", "--python", python)
    output = back.communicate(timeout=60)[0]
    assert back.returncode == 0, output
    assert {versions(cluster)[u] for u in PLACEMENT["c"]} == {NEW}
