"""`synsup upgrade` on a cluster node (issue 18): never a silent upgrade of one node that leaves
the cluster on two Synapse versions with nobody told. Without `--node`: every node prepared (its
--python, its checks, its version), then upgraded one after the other, main's node first; a node
down refuses it, a node that fails halts it, naming the nodes on each side. `--node N` given on any
node is N's single-host upgrade, carried out there (a request key), `--python` checked on N, the
next start of N bound to the new code as on one host. Three network namespaces, the fake Synapse ("a new venv" is a wrapper
script: tests/daemon/test_upgrade_operation.py).

Skipped (with the reason) without root, `ip netns` or etcd."""

from __future__ import annotations

import json
import os
import signal
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


def test_upgrade_given_on_any_node_prepares_every_node_then_upgrades_them_main_first(
        cluster: Cluster, short_dir: str) -> None:
    cluster.start_all()
    python = new_python(short_dir)
    before, db = pids(cluster), schema(cluster)
    code, out, err = upgrade(cluster, "c", "--python", python, "--dry-run")
    assert code == 0, err
    for node in PLACEMENT:
        assert f"node {node}: Synapse {OLD} (schema 94) -> {NEW}" in out, "every node prepared: its version, its plan"
    assert out.count("run      migrate the database schema") == 1 and "(on node a)" in out, "main's node migrates"
    assert "node b: migration: by node a, before this node's turn" in out
    assert "node c: restart generic1" in out and "(dry run: nothing changed)" in out
    assert pids(cluster) == before and schema(cluster) == db

    code, out, err = upgrade(cluster, "c", "--python", python)
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith("node ")]
    assert [line.split(":")[0] for line in lines] == ["node a", "node a", "node b", "node b", "node c", "node c"]
    assert f"upgraded: Synapse {OLD} -> {NEW}" in out and f"--python {python}" in out
    assert set(versions(cluster).values()) == {NEW} and schema(cluster)["current_version"] == 95
    starts = [e["name"] for e in cluster.d.events() if e["event"] == "start" and e.get("version") == NEW]
    assert starts[0] == "main" and set(starts[1:3]) == {"persister1", "persister2"} and len(starts) == 6, starts
    code, report = wait_for(lambda: cluster.status_when(lambda code, r: code == 0), timeout=20, what="every unit ready")
    assert [n["code_versions"] for n in report["nodes"]] == [[NEW]] * 3 and "code: two versions" not in cluster.table()


def test_upgrade_refused_with_a_node_down_and_halted_by_a_node_that_fails_naming_both_sides(
        cluster: Cluster, short_dir: str) -> None:
    cluster.start_all()
    python = new_python(short_dir)
    before, db = pids(cluster), schema(cluster)
    os.kill(cluster.local("c")["daemon"]["pid"], signal.SIGKILL)
    wait_for(lambda: cluster.status_when(lambda code, r: not r["nodes"][2]["up"]), timeout=20, what="c down")
    code, out, err = upgrade(cluster, "a", "--python", python)
    assert code == 1 and err.count("\n") == 1, err
    assert "node c is down: every node takes part in an upgrade" in err and "nothing changed" in err
    assert pids(cluster) == before and schema(cluster) == db

    back = cluster.start("c")  # adopts its processes
    assert back.communicate(timeout=60) and back.returncode == 0
    cluster.d.behave("generic1", refuse_version=NEW)
    code, out, err = upgrade(cluster, "b", "--python", python)
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith("synsup: error: node c: upgrade halted at generic1")
    assert "the upgrade halted at node c: a, b run the new code (see `synsup status --cluster`); once c is " \
        "fixed: `synsup upgrade --node c`" in err
    now = versions(cluster)
    assert {now[u] for u in ("main", "persister1", "persister2")} == {NEW}
    assert now["generic1"] == OLD, "rolled back on c, as on one host"
    wait_for(lambda: cluster.status_when(lambda code, r: [n["code_versions"] for n in r["nodes"]]
                                         == [[NEW], [NEW], [OLD]]), timeout=10, what="status --cluster: each node's Synapse")
    table = cluster.table()
    print(table)
    assert f"code: two versions run: a {NEW}; b {NEW}; c {OLD}" in table


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


def test_a_stopped_upgrade_is_refused_while_old_code_runs_on_another_node_naming_what_to_stop(
        cluster: Cluster, short_dir: str) -> None:
    """--allow-downtime: main's node stops its own processes and main migrates at its start; the old
    code's workers on b and c would run on over the new schema. Refused, naming them and the order
    to follow; nothing changed. Once they are stopped, the stopped upgrade of main's node goes."""
    cluster.start_all()
    python = new_python(short_dir)
    before, db = pids(cluster), schema(cluster)
    for node, args in (("c", ()), ("a", ("--node", "a"))):
        code, out, err = upgrade(cluster, node, "--python", python, "--allow-downtime", *args)
        assert code == 1 and err.count("\n") == 1, err
        assert "still running: b: persister1, persister2; c: generic1, pusher1, sender1" in err
        assert "synsup stop persister1 persister2 generic1 pusher1 sender1" in err and "--node a --allow-downtime" in err
        assert pids(cluster) == before and schema(cluster) == db
    done = cluster.run("c", "stop", "persister1", "persister2", "generic1", "pusher1", "sender1")
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: cluster.status_when(lambda code, r: all(u["state"] == "stopped" for u in r["units"]
                                                             if u["node"] in ("b", "c"))),
             timeout=30, what="b's and c's processes stopped, as their nodes publish")
    code, out, err = upgrade(cluster, "c", "--python", python, "--allow-downtime", "--node", "a")
    assert code == 0, err
    assert versions(cluster) == {"main": NEW} and schema(cluster)["current_version"] == 95
