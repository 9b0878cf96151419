"""`synsup stop` given on one node of a cluster (issue 18): every node's processes stop in the
single-host order across nodes (the other workers everywhere, then the stream writers, then main,
then Redis), then every daemon ends; `--node N` stops N only; `--local` (systemd's ExecStop) and
SIGTERM stop this node only. The unhappy paths: a node down, a plan in progress, a plan blocked and
aborted, two stops at once. Three network namespaces, the fake Synapse (tests/cluster_hosts.py).

Skipped (with the reason) without root, `ip netns` or etcd."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cluster_hosts import PLACEMENT, Cluster, process_runs
from etcd_server import EtcdServer, running_etcd
from helpers import REPO, Deployment, alive, processes_with, wait_for
from network_namespaces import Network, network

pytestmark = pytest.mark.integration

PROMPT = 30.0  # seconds a cluster stop of the fake deployment may take (each unit stops in well under 1 s)


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
        c.stop()  # each node `stop --local`; with the daemon gone it stops what it left too
        wait_for(lambda: not processes_with(deployment.control), timeout=20, what="every process to be gone")


def shown(node: str, done: subprocess.CompletedProcess[str], *args: str) -> str:
    return f"(on {node}) $ synsup {' '.join(args)}  (exit {done.returncode})\n{done.stdout}{done.stderr}"


def stop_on(cluster: Cluster, node: str, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    began = time.monotonic()
    done = cluster.run(node, "stop", *args)
    took = time.monotonic() - began
    print(shown(node, done, "stop", *args) + f"({took:.2f}s)")
    return done, took


def daemons(cluster: Cluster) -> dict[str, int]:
    return {node: cluster.local(node)["daemon"]["pid"] for node in PLACEMENT}


def exits(cluster: Cluster) -> dict[str, float]:
    """Unit -> when its last process exited (the fake Synapse's events log, one clock for all hosts)."""
    return {r["name"]: r["exit"] for r in process_runs(cluster.d.events()) if r["exit"] is not None}


def every_node_down(code: int, report: dict[str, Any]) -> bool:
    return not any(n["up"] for n in report["nodes"])


def block_a_plan(cluster: Cluster) -> dict[str, Any]:
    """A persister change whose new persister never gets ready: the plan blocks in its start phase
    (b's step failed, c's step waits for persister3 in its queue)."""
    cluster.d.behave("persister3", refuse=True)
    cluster.add_persister_on_b()
    for node in PLACEMENT:
        cluster.write_files(node)
    return wait_for(lambda: cluster.status_when(lambda code, r: code == 2 and r["plan"]["reason"].startswith("node b: ")),
                    timeout=30, what="the plan blocked with b's reason (exit 2)")[1]


def test_stop_on_one_node_stops_every_node_in_the_single_host_order_then_every_daemon(cluster: Cluster) -> None:
    cluster.start_all()
    pids = daemons(cluster)
    done, took = stop_on(cluster, "b")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("stopping: workers (on c), then stream writers (on b), then main (on a), then ")
    assert "node a: stopped main, redis" in done.stdout and "node b: stopped persister1, persister2" in done.stdout
    assert "node c: stopped generic1, pusher1, sender1" in done.stdout and done.stdout.endswith("stopped\n")
    assert took < PROMPT
    assert not any(alive(pid) for pid in pids.values()), "every daemon ended"
    assert processes_with(cluster.d.control) == [], "every process stopped"
    code, report = cluster.status()
    assert every_node_down(code, report), "every lease revoked: every node shows down at once"
    ended = exits(cluster)
    workers, writers = [ended[u] for u in PLACEMENT["c"]], [ended[u] for u in PLACEMENT["b"]]
    assert max(workers) < min(writers), "the other workers on every node before the stream writers"
    assert max(writers) < ended["main"], "the stream writers before main"


def test_stop_local_and_sigterm_stop_that_node_only_and_node_n_stops_n_only(cluster: Cluster) -> None:
    cluster.start_all()
    pids = daemons(cluster)
    done, _ = stop_on(cluster, "c", "--local")
    assert done.returncode == 0 and done.stdout.startswith("stopping: workers ..."), done.stderr
    assert not alive(pids["c"]) and alive(pids["a"]) and alive(pids["b"])
    code, report = cluster.status()
    assert [n["up"] for n in report["nodes"]] == [True, True, False]
    assert [u["state"] for u in report["units"] if u["node"] != "c"] == ["ready"] * 5, "a and b run on"

    back = cluster.start("c")
    assert back.communicate(timeout=60) and back.returncode == 0
    c_daemon = cluster.local("c")["daemon"]["pid"]
    only_c, _ = stop_on(cluster, "a", "--node", "c")
    assert only_c.returncode == 0, only_c.stderr
    assert "node c: stopped generic1, pusher1, sender1" in only_c.stdout
    assert [n["up"] for n in cluster.status()[1]["nodes"]] == [True, True, False], "c's lease revoked"
    wait_for(lambda: not alive(c_daemon), timeout=10, what="c's daemon process gone (it left the store last)")
    assert alive(pids["a"]), "--node c: a's daemon (where it was given) runs on"

    os.kill(pids["b"], signal.SIGTERM)  # systemd's stop without ExecStop: this node only
    wait_for(lambda: not alive(pids["b"]), timeout=20, what="b's daemon ended on SIGTERM")
    assert alive(pids["a"]) and [u["state"] for u in cluster.local("a")["units"]
                                 if u["name"] in ("main", "redis")] == ["ready", "ready"]
    assert [n["up"] for n in cluster.status()[1]["nodes"]] == [True, False, False]


def test_a_node_whose_daemon_was_killed_is_named_and_the_others_still_stop(cluster: Cluster) -> None:
    cluster.start_all()
    pids = daemons(cluster)
    c_units = [u["pid"] for u in cluster.local("c")["units"] if u["pid"]]
    os.kill(pids["c"], signal.SIGKILL)  # its lease still runs for up to TTL s: the stop finds that out
    done, took = stop_on(cluster, "a")
    assert done.returncode == 1
    assert "synsup: node c did not stop: node c went down before it answered" in done.stderr
    assert "`synsup stop --local` on c stops them" in done.stderr
    assert "node a: stopped main, redis" in done.stdout and "node b: stopped persister1, persister2" in done.stdout
    assert done.stdout.endswith("stopped, but for c\n")
    assert took < PROMPT
    assert not alive(pids["a"]) and not alive(pids["b"])
    assert all(alive(pid) for pid in c_units), "c's processes run on (no daemon there to stop them)"
    down, _ = stop_on(cluster, "b")  # a node already down is named at once
    assert down.returncode == 0 and "nothing to stop" in down.stdout


def test_stop_while_a_plan_is_in_progress_is_refused_naming_the_plan_and_abort(cluster: Cluster) -> None:
    cluster.start_all()
    blocked = block_a_plan(cluster)
    pids = daemons(cluster)
    done, took = stop_on(cluster, "a")
    assert done.returncode == 1
    assert done.stderr.startswith(f"synsup: error: plan {blocked['plan']['id']} is in progress (phase start ")
    assert "`synsup cluster abort` ends it" in done.stderr and "`synsup stop --local` stops this node only" in done.stderr
    assert took < 10
    assert all(alive(pid) for pid in pids.values()), "nothing stopped"


def test_stop_after_a_blocked_and_aborted_plan_ends_promptly_and_stops_every_node(cluster: Cluster) -> None:
    """c's step of the blocked plan is still in its queue, waiting for a persister3 that never gets
    ready: a stop that queued behind it would wait for ever (a lost attempt hung 120 s here)."""
    cluster.start_all()
    block_a_plan(cluster)
    aborted = cluster.run(None, "cluster", "abort", "--cluster", cluster.file)
    assert aborted.returncode == 0, aborted.stderr
    pids = daemons(cluster)
    done, took = stop_on(cluster, "b")
    assert done.returncode == 0, done.stderr
    assert took < PROMPT, f"the stop took {took:.1f}s"
    assert not any(alive(pid) for pid in pids.values())
    assert processes_with(cluster.d.control) == []
    assert every_node_down(*cluster.status())


def test_stop_given_at_once_on_two_nodes_stops_every_node_once(cluster: Cluster) -> None:
    cluster.start_all()
    pids = daemons(cluster)
    began = time.monotonic()
    both = [subprocess.Popen(cluster.synsup(node, "stop"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=cluster.d.env(), cwd=REPO) for node in ("a", "c")]
    outputs = [p.communicate(timeout=60) for p in both]
    took = time.monotonic() - began
    for node, p, (out, err) in zip(("a", "c"), both, outputs):
        print(f"(on {node}) $ synsup stop  (exit {p.returncode})\n{out}{err}")
    assert took < PROMPT
    codes = sorted(p.returncode for p in both)
    assert codes[0] == 0, "one of them stopped the cluster"
    other = next((err for p, (out, err) in zip(both, outputs) if p.returncode != 0), "")
    assert codes[1] == 0 or "a cluster stop given on node " in other, other
    assert not any(alive(pid) for pid in pids.values())
    assert processes_with(cluster.d.control) == []
    assert every_node_down(*cluster.status())
