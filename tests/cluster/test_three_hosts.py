"""Three hosts on one machine: three network namespaces made by the test (tests/network_namespaces.py),
one etcd member on the bridge address, one `synsup start --cluster F --node N` per namespace with
the fake Synapse and a state dir of its own, the same config files for all. main and Redis on a,
the two event persisters on b, the other workers on c: each daemon runs only its node's units,
and a unit whose dependency is on another node waits for it as the store says.

Skipped (with the reason) without root, `ip netns` or etcd."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from etcd_server import EtcdServer, running_etcd
from helpers import REPO, Deployment, alive, processes_with, wait_for
from network_namespaces import Network, network

pytestmark = pytest.mark.integration
TTL = 3
PLACEMENT = {"a": ["main", "redis"], "b": ["persister1", "persister2"], "c": ["generic1", "sender1", "pusher1"]}


@pytest.fixture(scope="module")
def hosts() -> Iterator[Network]:
    yield from network(*PLACEMENT)


@pytest.fixture(scope="module")
def etcd(hosts: Network) -> Iterator[EtcdServer]:
    yield from running_etcd(host=hosts.bridge_address)


class Cluster:
    """The deployment's files (shared by every node), cluster.yaml, and a synsup per node."""

    def __init__(self, deployment: Deployment, hosts: Network, etcd: EtcdServer) -> None:
        self.d, self.hosts = deployment, hosts
        self._spread_over(hosts.addresses)
        self.file = os.path.join(deployment.root, "cluster.yaml")
        placement = {unit: node for node, units in PLACEMENT.items() for unit in units}
        with open(self.file, "w") as f:
            yaml.safe_dump({"name": "three", "store": {"endpoints": [etcd.url], "ttl": TTL,
                                                       "prefix": f"/test/{uuid.uuid4().hex}"},
                            "nodes": {n: {"address": a} for n, a in hosts.addresses.items()},
                            "placement": placement}, f)

    def _spread_over(self, addresses: dict[str, str]) -> None:
        """instance_map and Redis at the address of the node that runs them; listeners on every address."""
        shared = self.d.shared
        shared["redis"] |= {"host": addresses["a"], "password": "secret"}  # else protected mode refuses other hosts
        for name, entry in shared["instance_map"].items():
            entry["host"] = addresses["a" if name == "main" else "b"]
        for listener in [*shared["listeners"], *(w for doc in self.d.workers.values()
                                                   for w in doc.get("worker_listeners", []))]:
            listener["bind_addresses"] = ["0.0.0.0"]
        self.d.write()

    def state_dir(self, node: str) -> str:
        return os.path.join(os.path.dirname(self.d.root), f"s{node}")

    def synsup(self, node: str | None, *args: str) -> list[str]:
        """argv of `synsup ARGS` on `node` (in its namespace) or, None, in the root namespace."""
        where = ["ip", "netns", "exec", self.hosts.hosts[node]] if node else []
        state = ["--state-dir", self.state_dir(node)] if node else []
        return [*where, sys.executable, "-m", "synsup", *args, *state]

    def start(self, node: str) -> subprocess.Popen[str]:
        argv = self.synsup(node, "start", "--cluster", self.file, "--node", node, "-c", self.d.config,
                           "-a", self.d.workers_dir)
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=self.d.env(), cwd=REPO)

    def run(self, node: str | None, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.synsup(node, *args), capture_output=True, text=True, env=self.d.env(),
                              cwd=REPO, timeout=120)

    def status(self) -> tuple[int, dict[str, Any]]:
        done = self.run(None, "status", "--cluster", self.file, "--json")
        assert done.stdout, done.stderr
        return done.returncode, json.loads(done.stdout)

    def status_when(self, condition: Callable[[int, dict[str, Any]], bool]) -> tuple[int, dict[str, Any]] | None:
        code, report = self.status()
        return (code, report) if condition(code, report) else None

    def local(self, node: str) -> dict[str, Any]:
        return json.loads(self.run(node, "status", "--json").stdout)

    def stop(self) -> None:
        for node in PLACEMENT:
            self.run(node, "stop")


@pytest.fixture
def cluster(deployment: Deployment, hosts: Network, etcd: EtcdServer) -> Iterator[Cluster]:
    c = Cluster(deployment, hosts, etcd)
    try:
        yield c
    finally:
        c.stop()  # `synsup stop` with the daemon gone stops what it left too
        wait_for(lambda: not processes_with(deployment.control), timeout=20, what="every process to be gone")


def all_ready(report: dict[str, Any]) -> bool:
    return bool(report["units"]) and all(u["state"] == "ready" for u in report["units"])


def test_three_nodes_each_run_their_own_units_and_a_killed_daemon_goes_down_after_its_lease(
        cluster: Cluster) -> None:
    began = time.monotonic()
    started = [cluster.start(node) for node in PLACEMENT]  # together: b waits for a's main, c for b
    outputs = [p.communicate(timeout=120)[0] for p in started]
    assert [p.returncode for p in started] == [0, 0, 0], outputs
    print(f"three nodes started, every `synsup start` done after {time.monotonic() - began:.2f}s")

    code, report = wait_for(lambda: cluster.status_when(lambda code, r: code == 0 and all_ready(r)),
                            timeout=20, what="every unit of every node ready in status --cluster (exit 0)")
    assert [(n["name"], n["up"]) for n in report["nodes"]] == [("a", True), ("b", True), ("c", True)]
    by_node = {node: [u["name"] for u in report["units"] if u["node"] == node] for node in PLACEMENT}
    assert by_node == {"a": ["redis", "postgres", "main"], "b": ["persister1", "persister2"],
                       "c": ["generic1", "pusher1", "sender1"]}
    for node, units in by_node.items():
        local = {u["name"]: u for u in cluster.local(node)["units"]}
        own = {name for name, u in local.items() if u["pid"]}
        assert own == set(units) - {"postgres"}, f"node {node} runs only its own units"
        assert all(u["pid"] == local[u["name"]]["pid"] for u in report["units"] if u["node"] == node)

    c_daemon = cluster.local("c")["daemon"]["pid"]
    c_pids = [u["pid"] for u in report["units"] if u["node"] == "c"]
    os.kill(c_daemon, signal.SIGKILL)
    killed_at = time.monotonic()
    code, down = wait_for(lambda: cluster.status_when(lambda code, r: not r["nodes"][2]["up"]),
                          timeout=TTL + 5, what="node c down once its lease ends")
    after = time.monotonic() - killed_at
    print(f"node c down {after:.2f}s after its daemon was killed (ttl {TTL}s)")
    assert after >= TTL * 2 / 3 - 0.3, f"c went down {after:.1f}s after its daemon died: before its lease could end"
    assert code == 1, "degraded"
    assert [u["state"] for u in down["units"] if u["node"] == "c"] == ["unknown"] * 3
    assert [u["state"] for u in down["units"] if u["node"] != "c"] == ["ready"] * 5
    assert all(alive(pid) for pid in c_pids), "c's processes keep running without their daemon"
