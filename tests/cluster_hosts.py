"""Three hosts on one machine for the multi-host tests and contrib/bench/cluster.py: the fake
Synapse deployment's files (a copy per host), cluster.yaml, and one `synsup start --cluster F
--node N` per network namespace (tests/network_namespaces.py); main and Redis on a, the two event
persisters on b, the other workers on c. And the checker of the shard-map invariant, read from
every fake Synapse's events log (start and exit of each process with its events map)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import yaml
from etcd_server import EtcdCluster, EtcdServer
from helpers import REPO, free_ports, listener, wait_for, worker, write_deployment
from network_namespaces import Network

TTL = 3
PLACEMENT = {"a": ["main", "redis"], "b": ["persister1", "persister2"], "c": ["generic1", "sender1", "pusher1"]}


class DeploymentFiles(Protocol):
    """What Cluster needs of a deployment: helpers.Deployment (fake Synapse) or the real one of
    tests/e2e/real_hosts.py."""

    root: str
    shared: dict[str, Any]
    workers: dict[str, dict[str, Any]]

    def write(self) -> None: ...

    def env(self) -> dict[str, str]: ...


class Cluster:
    """The deployment's files (shared by every node), cluster.yaml, and a synsup per node."""

    def __init__(self, deployment: DeploymentFiles, hosts: Network, etcd: EtcdServer | EtcdCluster,
                 nodes: dict[str, list[str]] = PLACEMENT, placed_by_config: tuple[str, ...] = ()) -> None:
        """`nodes`: node -> the processes it runs; those in `placed_by_config` are left out of
        cluster.yaml's placement (their instance_map host places them)."""
        self.d, self.hosts, self.nodes = deployment, hosts, nodes
        self.files: dict[str, tuple[str, str]] = {}  # node -> its own copy of the config files
        self._spread_over(hosts.addresses)
        for node in nodes:
            self.write_files(node)
        self.file = os.path.join(deployment.root, "cluster.yaml")
        placement = {unit: node for node, units in nodes.items() for unit in units if unit not in placed_by_config}
        self.document = {"name": "three", "store": {"endpoints": etcd.urls, "ttl": TTL,
                                                    "prefix": f"/test/{uuid.uuid4().hex}"},
                         "nodes": {n: {"address": a} for n, a in hosts.addresses.items()}, "placement": placement}
        self.write_cluster_file()

    def write_cluster_file(self, **extra: Any) -> None:
        with open(self.file, "w") as f:
            yaml.safe_dump(self.document | extra, f)

    def _spread_over(self, addresses: dict[str, str]) -> None:
        """instance_map and Redis at the address of the node that runs them; listeners on every address."""
        shared = self.d.shared
        shared["redis"] |= {"host": addresses["a"], "password": "secret"}  # else protected mode refuses other hosts
        for name, entry in shared["instance_map"].items():
            entry["host"] = addresses["a" if name == "main" else "b"]
        for entry in [*shared["listeners"], *(w for doc in self.d.workers.values()
                                                for w in doc.get("worker_listeners", []))]:
            entry["bind_addresses"] = ["0.0.0.0"]
        self.d.write()

    def write_files(self, node: str) -> None:
        """The deployment's files as node `node` has them (config management writes each host's)."""
        self.files[node] = write_deployment(os.path.join(self.d.root, f"host-{node}"), self.d.shared, self.d.workers)

    def add_persister_on_b(self) -> None:
        """persister3 on node b (its instance_map host is b's address), in the events map; each
        host's files are written later (`write_files`), as an ansible run goes host by host."""
        port = free_ports(1)[0]
        self.d.shared["instance_map"]["persister3"] = {"host": self.hosts.addresses["b"], "port": port}
        self.d.shared["stream_writers"]["events"].append("persister3")
        entry = listener(port, "replication") | {"bind_addresses": ["0.0.0.0"]}
        self.d.workers["persister3"] = worker("persister3", entry)

    def state_dir(self, node: str) -> str:
        return os.path.join(os.path.dirname(self.d.root), f"s{node}")

    def synsup(self, node: str | None, *args: str) -> list[str]:
        """argv of `synsup ARGS` on `node` (in its namespace) or, None, in the root namespace."""
        where = ["ip", "netns", "exec", self.hosts.hosts[node]] if node else []
        state = ["--state-dir", self.state_dir(node)] if node else []
        return [*where, sys.executable, "-m", "synsup", *args, *state]

    def start(self, node: str, *extra: str) -> subprocess.Popen[str]:
        config, workers = self.files[node]
        argv = self.synsup(node, "start", "--cluster", self.file, "--node", node, "-c", config, "-a", workers, *extra)
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

    def table(self) -> str:
        done = self.run(None, "status", "--cluster", self.file)
        return f"$ synsup status --cluster cluster.yaml  (exit {done.returncode})\n{done.stdout}{done.stderr}"

    def start_all(self, *extra: str, timeout: float = 120) -> None:
        started = [self.start(node, *extra) for node in self.nodes]  # together: b waits for a's main, c for b
        outputs = [p.communicate(timeout=timeout)[0] for p in started]
        assert [p.returncode for p in started] == [0, 0, 0], outputs
        wait_for(lambda: self.status_when(lambda code, r: code == 0 and all_ready(r)), timeout=20,
                 what="every unit of every node ready in status --cluster (exit 0)")

    def local(self, node: str) -> dict[str, Any]:
        return json.loads(self.run(node, "status", "--json").stdout)

    def stop(self) -> None:
        """Each node on its own (`stop --local`: as systemd does; a plain `stop` stops the cluster)."""
        for node in self.nodes:
            self.run(node, "stop", "--local")


def all_ready(report: dict[str, Any]) -> bool:
    return bool(report["units"]) and all(u["state"] == "ready" for u in report["units"])


def process_runs(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every fake Synapse process from its events log (shared by the three hosts): name, events
    map, start and exit time (None: still running)."""
    runs: dict[int, dict[str, Any]] = {}
    for e in events:
        if e["event"] == "start":
            runs[e["pid"]] = {"pid": e["pid"], "name": e["name"], "map": tuple(e["events_writers"] or ()),
                              "start": e["t"], "exit": None}
        elif e["event"] == "exit" and e["pid"] in runs:
            runs[e["pid"]]["exit"] = e["t"]
    return list(runs.values())


def maps_overlapping(runs: list[dict[str, Any]]) -> list[str]:
    """Where a process with a newer events map started while an events writer of an older map
    still ran (maps in the order they first appear), on any host: what Synapse must never see."""
    order = list(dict.fromkeys(r["map"] for r in sorted(runs, key=lambda r: r["start"])))
    found = []
    for old in (r for r in runs if r["name"] in r["map"]):
        for new in (r for r in runs if order.index(r["map"]) > order.index(old["map"])):
            if old["exit"] is None or new["start"] < old["exit"]:
                found.append(f"{new['name']} (map {new['map']}) started while {old['name']} (map {old['map']}) ran")
    return found


def plan_phase(report: dict[str, Any]) -> str | None:
    return report["plan"]["phase"] if report["plan"] else None
