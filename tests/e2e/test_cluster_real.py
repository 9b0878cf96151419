"""Issue 18 end to end: real Synapse, PostgreSQL and Redis over three hosts (network namespaces
made by the test, one etcd on the bridge, one `synsup start --cluster F --node N` each; the
deployment is tests/e2e/real_hosts.py's). A client sends messages through generic1 (on c) into
a room of persister2's while persister2 moves from b to c (its instance_map host edited on every
host, then `synsup reload`): the plan completes, every message sent is in the room once, and no
process started with the new files while persister2 ran on b.

Skipped with the reason without root, `ip netns`, etcd, PostgreSQL's binaries, redis-server or
Synapse; in CI (CI=true) a missing part fails, as the other e2e tests do."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cluster_hosts import Cluster, all_ready
from etcd_server import EtcdServer, running_etcd
from helpers import wait_for
from network_namespaces import Network, network, why_no_namespaces

from e2e.conftest import skip_or_fail
from e2e.matrix import Client
from e2e.own_postgres import OwnPostgres, own_postgres, why_no_postgres
from e2e.real_hosts import NODES, move_persister2_to_c, overlaps, real_cluster, unit_runs
from e2e.steady_client import SteadyClient

pytestmark = pytest.mark.e2e
RATE = 4  # messages a second, each retried with its transaction id until it succeeds


def why_not_here() -> str | None:
    if importlib.util.find_spec("synapse") is None:
        return f"Synapse is not installed for {sys.executable} (pip install 'matrix-synapse[postgres,redis]')"
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (apt-get install redis-server)"
    return why_no_namespaces() or why_no_postgres() or None


@pytest.fixture(scope="module")
def hosts() -> Iterator[Network]:
    skip_or_fail(why_not_here())
    yield from network(*NODES)


@pytest.fixture(scope="module")
def etcd(hosts: Network) -> Iterator[EtcdServer]:
    yield from running_etcd(host=hosts.bridge_address)


@pytest.fixture(scope="module")
def postgres(hosts: Network) -> Iterator[OwnPostgres]:
    yield from own_postgres(hosts.bridge_address)


@pytest.fixture
def cluster(hosts: Network, etcd: EtcdServer, postgres: OwnPostgres) -> Iterator[Cluster]:
    root = tempfile.mkdtemp(prefix="ss", dir="/tmp")  # short: UNIX socket paths
    c = real_cluster(root, hosts, etcd, postgres)
    try:
        yield c
    finally:
        c.stop()
        wait_for(lambda: not any(hosts.pids(node) for node in NODES), timeout=60,
                 what="every process in the three namespaces gone")
        shutil.rmtree(root, ignore_errors=True)


def room_of_persister2(main: Client, worker: Client, secret: str) -> str:
    """A user, and a room whose events persister2 persists (rooms are sharded by id)."""
    from synapse.config.workers import RoutableShardedWorkerHandlingConfig
    main.register(secret, "alice", "wonderland")
    worker.login("alice", "wonderland")
    shards = RoutableShardedWorkerHandlingConfig(["persister1", "persister2"])
    for _ in range(12):
        room = worker.create_room()
        if shards.get_instance(room) == "persister2":
            return room
    raise AssertionError("12 rooms and none of persister2's")


def units_by_node(report: dict[str, Any]) -> dict[str, list[str]]:
    return {node: sorted(u["name"] for u in report["units"] if u["node"] == node) for node in NODES}


def test_a_persister_moves_from_b_to_c_while_a_client_sends_through_generic1_none_lost_none_twice(
        cluster: Cluster) -> None:
    began = time.monotonic()
    cluster.start_all("--python", sys.executable, timeout=240)
    print(f"\nthree hosts, real Synapse: every unit ready {time.monotonic() - began:.1f}s after `synsup start`")
    code, report = cluster.status()
    assert code == 0 and all_ready(report)
    assert units_by_node(report) == {"a": ["main", "postgres", "redis"], "b": ["persister1", "persister2"],
                                     "c": ["generic1", "sender1"]}
    for node in NODES:
        own = {u["name"]: u["pid"] for u in cluster.local(node)["units"] if u["pid"]}
        assert own == {u["name"]: u["pid"] for u in report["units"] if u["node"] == node and u["pid"]}
    print(cluster.table())

    address = cluster.hosts.addresses
    main = Client(f"http://{address['a']}:{cluster.d.ports['main']}")
    worker = Client(f"http://{address['c']}:{cluster.d.ports['generic1']}")
    room = room_of_persister2(main, worker, cluster.d.shared["registration_shared_secret"])
    client = SteadyClient(worker, room, RATE).start()
    try:
        wait_for(lambda: len(client.sender.sent) >= 5, timeout=60, what="5 messages sent through generic1")
        changed_at = time.time()
        move_persister2_to_c(cluster)
        reload = cluster.run("a", "reload")
        print(f"$ synsup reload  (on a, exit {reload.returncode})\n{reload.stdout}{reload.stderr}")
        phases: list[str] = []  # the plan's phases as status --cluster showed them

        def moved(code: int, r: dict[str, Any]) -> bool:
            if r["plan"] and r["plan"]["phase"] not in phases:
                phases.append(r["plan"]["phase"])
                if len(phases) == 1:
                    print(f"during the move:\n{cluster.table()}")
            return (code == 0 and r["plan"] is None and all_ready(r)
                    and units_by_node(r)["c"] == ["generic1", "persister2", "sender1"])
        code, after = wait_for(lambda: cluster.status_when(moved), timeout=180,
                               what="persister2 ready on c, every unit ready, the plan done")
        moved_in = time.time() - changed_at
        sent_then = len(client.sender.sent)
        wait_for(lambda: len(client.sender.sent) >= sent_then + 5, timeout=60, what="5 more messages after the move")
    finally:
        client.finish()
    print(f"the move: every unit ready again {moved_in:.1f}s after the files changed; phases seen: {phases}")
    print(cluster.table())
    assert phases, "status --cluster showed the plan while it ran"
    assert units_by_node(after) == {"a": ["main", "postgres", "redis"], "b": ["persister1"],
                                    "c": ["generic1", "persister2", "sender1"]}
    assert len({n["config_digest"] for n in after["nodes"]} | {after["config"]["applied"]}) == 1, "all on the new files"
    assert [(u["name"], u["degraded"]) for node in NODES for u in cluster.local(node)["units"]
            if u["degraded"]] == [], "each process reaches its peers at their instance_map address"

    lost, twice = client.lost_and_duplicated()
    failed = client.failed_between(changed_at, changed_at + moved_in)
    stall = client.sender.stall_between(changed_at, changed_at + moved_in)
    print(f"messages: {len(client.sender.sent)} sent, {len(lost)} lost, {len(twice)} duplicated; during the move "
          f"{failed} failed requests (each retried; sends and /sync), longest a message waited {stall:.1f}s: "
          f"{sorted(set(e[:60] for e in client.errors))}")
    assert (lost, twice) == ([], [])

    runs = unit_runs(cluster)
    for r in runs:
        end = "running" if r["exit"] is None else f"{r['exit'] - changed_at:+.2f}s"
        print(f"  {r['node']} {r['name']:<11} pid {r['pid']:<7} {r['start'] - changed_at:+8.2f}s .. {end}")
    assert overlaps(runs, changed_at, "persister2", "b") == []
    assert [r["node"] for r in runs if r["name"] == "persister2" and r["exit"] is None] == ["c"]


def test_overlaps_sees_a_process_started_with_the_new_files_while_the_moved_writer_ran_at_its_old_node() -> None:
    runs = [{"name": "persister2", "node": "b", "pid": 1, "start": 0.0, "exit": 12.0},
            {"name": "persister1", "node": "b", "pid": 2, "start": 0.0, "exit": 14.0},  # old files, not moved
            {"name": "persister2", "node": "c", "pid": 3, "start": 12.5, "exit": None}]
    assert overlaps(runs, 10.0, "persister2", "b") == []
    assert overlaps([*runs, {"name": "main", "node": "a", "pid": 4, "start": 11.0, "exit": None}],
                    10.0, "persister2", "b") == ["main on a (pid 4) started while persister2 on b (pid 1) ran"]
