"""Three hosts (tests/cluster_hosts.py, fake Synapse): the order of a change across nodes and a
unit moved while its old node's daemon was down.

- A change that restarts every Synapse process keeps the single-host order across nodes: b's
  persisters start again only once a's main is ready again, c's workers once the persisters are
  (read from every fake Synapse's start and ready records; the machine's clock is shared).
- persister2 moved from b to c while b's daemon was dead (its persister2 ran on): b's daemon,
  started again, retires it (stopped, its port closed) and says so; or, when it comes back while
  the plan still waits for it, adopts it for the plan's stop step. Never beside c's.

Skipped (with the reason) without root, `ip netns` or etcd."""

from __future__ import annotations

import functools
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cluster_hosts import PLACEMENT, Cluster, all_ready, maps_overlapping, process_runs
from etcd_server import EtcdServer, running_etcd
from helpers import Deployment, processes_with, wait_for
from network_namespaces import Network, network

pytestmark = pytest.mark.integration

BY_CONFIG = ("persister1", "persister2")  # placed by their instance_map host: a move is an edit of the files


@pytest.fixture(scope="module")
def hosts() -> Iterator[Network]:
    yield from network(*PLACEMENT)


@pytest.fixture(scope="module")
def etcd(hosts: Network) -> Iterator[EtcdServer]:
    yield from running_etcd(host=hosts.bridge_address)


@pytest.fixture
def cluster(deployment: Deployment, hosts: Network, etcd: EtcdServer) -> Iterator[Cluster]:
    c = Cluster(deployment, hosts, etcd, PLACEMENT, BY_CONFIG)
    try:
        yield c
    finally:
        c.stop()
        wait_for(lambda: not processes_with(deployment.control), timeout=20, what="every process to be gone")


def runs_with_ready(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """process_runs with each run's ready time (None: never ready) and its config tags."""
    runs = {r["pid"]: r for r in process_runs(events)}
    for e in events:
        if e["event"] == "start" and e["pid"] in runs:
            runs[e["pid"]] |= {"ready": None, "tags": tuple(e.get("config") or ())}
        elif e["event"] == "ready" and e["pid"] in runs:
            runs[e["pid"]]["ready"] = e["t"]
    return list(runs.values())


def restart_order_violations(runs: list[dict[str, Any]], needs: dict[str, tuple[str, ...]]) -> list[str]:
    """Each run (tagged by the change) that started before a unit it needs, restarted by the same
    change, was ready again."""
    ready = {r["name"]: r["ready"] for r in runs}
    return [f"{r['name']} started at {r['start']:.3f}, {needed} ready again only at {ready[needed]:.3f}"
            for r in runs for needed in needs.get(r["name"], ()) if needed in ready
            and (ready[needed] is None or r["start"] < ready[needed])]


def test_restart_order_violations_sees_a_worker_started_before_main_was_ready_again() -> None:
    runs = [{"name": "main", "start": 1.0, "ready": 2.0}, {"name": "generic1", "start": 2.5, "ready": 3.0}]
    assert restart_order_violations(runs, {"generic1": ("main",)}) == []
    assert restart_order_violations([runs[0], {"name": "generic1", "start": 1.5, "ready": 1.6}],
                                    {"generic1": ("main",)}) == ["generic1 started at 1.500, main ready again only at 2.000"]


NEEDS = {"persister1": ("main",), "persister2": ("main",), **{w: ("main", "persister1", "persister2")
                                                             for w in ("generic1", "sender1", "pusher1")}}


def test_a_change_restarting_main_restarts_the_other_nodes_units_only_once_what_they_need_is_ready_again(
        cluster: Cluster) -> None:
    cluster.start_all()
    began = time.monotonic()
    cluster.d.shared["_fake_tags"] = ["rolled"]  # a shared key: every Synapse process restarts, in step order
    for node in PLACEMENT:
        cluster.write_files(node)
    synapse = {"main", "persister1", "persister2", "generic1", "sender1", "pusher1"}

    def rolled() -> list[dict[str, Any]] | None:
        runs = [r for r in runs_with_ready(cluster.d.events()) if r["tags"] == ("rolled",)]
        done = {r["name"] for r in runs if r["ready"] is not None} == synapse
        return runs if done and cluster.status_when(lambda code, r: code == 0 and r["plan"] is None and all_ready(r)) \
            else None
    runs = wait_for(rolled, timeout=90, what="every Synapse process restarted with the new files, the plan done")
    print(f"every process restarted across three nodes in {time.monotonic() - began:.2f}s")
    t0 = min(r["start"] for r in runs)
    for r in sorted(runs, key=lambda r: r["start"]):
        print(f"  {r['name']:<11} started {r['start'] - t0:6.3f}s  ready {r['ready'] - t0:6.3f}s")
    assert restart_order_violations(runs, NEEDS) == []
    assert len(runs) == len(synapse), "each restarted once"
    assert maps_overlapping(process_runs(cluster.d.events())) == []


def _persister2_runs(cluster: Cluster) -> list[dict[str, Any]]:
    return [r for r in process_runs(cluster.d.events()) if r["name"] == "persister2"]


def _b_alone_with_files_moving_persister2(cluster: Cluster) -> dict[str, Any]:
    """Every node started (a first: it leads), every unit ready; then only b gets files that move
    persister2 to c, and shows them: b's persister2 run."""
    for nodes in (["a"], ["b", "c"]):  # a first: it leads
        started = [cluster.start(node) for node in nodes]
        assert [p.communicate(timeout=120) and p.returncode for p in started] == [0] * len(nodes)
    wait_for(lambda: cluster.status_when(lambda code, r: code == 0 and all_ready(r)), timeout=20,
             what="every unit of every node ready")
    [old] = [r for r in _persister2_runs(cluster) if r["exit"] is None]
    cluster.d.shared["instance_map"]["persister2"]["host"] = cluster.hosts.addresses["c"]
    cluster.nodes = {"a": ["main", "redis"], "b": ["persister1"], "c": ["persister2", "generic1", "sender1", "pusher1"]}
    cluster.write_files("b")
    wait_for(lambda: cluster.status_when(lambda code, r: len({n["config_digest"] for n in r["nodes"]}) == 2),
             timeout=20, what="b showing its new files")
    return old


def _move_persister2_while_b_dies(cluster: Cluster) -> dict[str, Any]:
    """persister2 moved from b to c (its instance_map host edited on every host) and b's daemon
    killed once the plan waits for its prepare (its processes run on): b's persister2 run. (The
    leader plans only once every node that takes part shows the new files: b's daemon, frozen
    once it showed them, dies while the plan waits; a lease of 20 s outlives the freeze.)"""
    cluster.write_cluster_file(store={**cluster.document["store"], "ttl": 20})
    old = _b_alone_with_files_moving_persister2(cluster)
    b_daemon = cluster.local("b")["daemon"]["pid"]
    os.kill(b_daemon, signal.SIGSTOP)
    try:
        cluster.write_files("a")
        cluster.write_files("c")
        wait_for(lambda: cluster.status_when(lambda code, r: r["plan"] is not None and r["plan"]["phase"] == "prepare"
                                             and r["plan"]["waiting_for"] == ["b"]),
                 timeout=30, what="the plan proposed, its prepare waiting for b")
    finally:
        os.kill(b_daemon, signal.SIGKILL)
    return old


def _past(plan: str, phase: str) -> Callable[[int, dict[str, Any]], bool]:
    def past(code: int, r: dict[str, Any]) -> bool:
        return r["plan"] is None or r["plan"]["id"] != plan or r["plan"]["phase"] != phase \
            or r["plan"]["waiting_for"] != ["b"]
    return past


def test_a_unit_moved_off_a_node_whose_daemon_was_down_is_retired_by_that_daemon_when_it_starts_again(
        cluster: Cluster) -> None:
    """b's daemon dead, persister2 moved to c, the admin acknowledging b's phases (gone, as he
    thought): c runs persister2; b's old one ran on. b's daemon back: it stops that one (exit and
    port closed) before it joins, says so, and runs persister1 only."""
    old = _move_persister2_while_b_dies(cluster)
    wait_for(lambda: cluster.status_when(lambda code, r: code == 2 and r["plan"]["reason"] == "node b is down"),
             timeout=30, what="b down (its lease ended), the plan blocked on it (exit 2)")
    # b's phases: prepare, stop persister2, restart persister1 (c's workers restart after it and
    # wait for persister1, whose node is down: the plan waits for c until b is back)
    for phase in ("prepare", "stop persister2: ", "restart"):
        code, report = wait_for(lambda: cluster.status_when(lambda code, r: r["plan"] is not None
                                                            and r["plan"]["waiting_for"] == ["b"]),
                                timeout=30, what="the plan waiting for b")
        assert report["plan"]["phase"].startswith(phase)
        done = cluster.run(None, "cluster", "ack", "--cluster", cluster.file, "--node", "b", "--phase",
                           report["plan"]["phase"])
        assert done.returncode == 0, done.stderr
        past = _past(report["plan"]["id"], report["plan"]["phase"])
        wait_for(functools.partial(cluster.status_when, past), timeout=30, what="the plan past the phase acknowledged")
    wait_for(lambda: len([r for r in _persister2_runs(cluster) if r["exit"] is None]) == 2, timeout=30,
             what="c's persister2 started by the plan")
    runs = _persister2_runs(cluster)
    assert [r["pid"] for r in runs if r["exit"] is None] != [old["pid"]], "c runs persister2"
    assert old["exit"] is None and old["pid"] in [r["pid"] for r in runs if r["exit"] is None], \
        "b's old persister2 ran on (the admin's acknowledgement was wrong)"

    back = cluster.start("b")
    output = back.communicate(timeout=120)[0]
    print(output)
    assert back.returncode == 0, output
    assert "retired: persister2 (now placed on c)" in output
    gone = next(r for r in _persister2_runs(cluster) if r["pid"] == old["pid"])
    assert gone["exit"] is not None, "b's persister2 stopped"
    code, report = wait_for(lambda: cluster.status_when(lambda code, r: code == 0 and r["plan"] is None and all_ready(r)),
                            timeout=60, what="every unit ready, b back, the plan done")
    print(cluster.table())
    assert [u["node"] for u in report["units"] if u["name"] == "persister2"] == ["c"]
    assert "persister2" not in [u["name"] for u in cluster.local("b")["units"] if u["pid"]]
    assert [r["pid"] for r in _persister2_runs(cluster) if r["start"] > gone["exit"]] == [], \
        "b started no persister2 of its own"


def test_a_node_back_while_the_plan_waits_for_it_leaves_the_moved_unit_to_the_plans_stop_step(
        cluster: Cluster) -> None:
    """b's daemon dead, persister2 moved to c, the plan waiting for b; b's daemon back: it adopts
    its old persister2 for the plan's stop step, which stops it before c starts its own."""
    old = _move_persister2_while_b_dies(cluster)
    back = cluster.start("b")
    output = back.communicate(timeout=120)[0]
    print(output)
    assert back.returncode == 0, output
    assert "left to the plan in progress: persister2 (now placed on c; the plan stops it here)" in output
    code, report = wait_for(lambda: cluster.status_when(lambda code, r: code == 0 and r["plan"] is None and all_ready(r)
                                                        and [u["node"] for u in r["units"] if u["name"] == "persister2"]
                                                        == ["c"]),
                            timeout=60, what="the plan done, persister2 on c, every unit ready")
    print(cluster.table())
    runs = _persister2_runs(cluster)
    stopped = next(r for r in runs if r["pid"] == old["pid"])
    assert stopped["exit"] is not None, "the plan's stop step stopped b's persister2"
    new = [r for r in runs if r["exit"] is None]
    assert len(new) == 1 and new[0]["start"] > stopped["exit"], "c's persister2 started only after b's exited"


def test_a_node_alone_with_files_that_move_a_unit_away_keeps_it_running_when_its_daemon_starts_again(
        cluster: Cluster) -> None:
    """Only b has files that move persister2 to c (a stale push, a local edit): no plan applies them.
    b's daemon killed and started again must not retire persister2 for its files alone (the applied
    shard map still routes its rooms to it): it adopts it, and the same process runs on."""
    old = _b_alone_with_files_moving_persister2(cluster)
    os.kill(cluster.local("b")["daemon"]["pid"], signal.SIGKILL)
    back = cluster.start("b")
    output = back.communicate(timeout=120)[0]
    print(output)
    assert back.returncode == 0, output
    assert "retired" not in output and "left to the cluster's plan: persister2" in output
    code, report = wait_for(lambda: cluster.status_when(lambda code, r: r["plan"] is None and all(
        n["up"] for n in r["nodes"])), timeout=30, what="b up again, no plan")
    assert [r["pid"] for r in _persister2_runs(cluster) if r["exit"] is None] == [old["pid"]], \
        "b's persister2 runs on, the same process"
    assert [(u["node"], u["pid"]) for u in report["units"] if u["name"] == "persister2"] == [("b", old["pid"])]
