"""Real Synapse over three hosts (tests/e2e/test_cluster_real.py, contrib/bench/cluster.py
--synapse real): the demo deployment (contrib/demo/deployment.py) without its pusher and
background worker, spread by tests/cluster_hosts.py's Cluster: main and Redis (with a password)
on a, persister1 and persister2 on b (their instance_map host places them, so a move is a
config edit), generic1 and sender1 on c; every listener on every address, every instance_map
host a node's address. PostgreSQL is a cluster of the test's own on the bridge address
(tests/e2e/own_postgres.py). And the units' runs as the daemons logged them, for the shard-map
invariant: real Synapse keeps no events log as the fake one does."""

from __future__ import annotations

import os
import sys
import uuid
from typing import Any

from cluster_hosts import Cluster
from etcd_server import EtcdServer
from helpers import free_ports
from network_namespaces import Network

from e2e.conftest import daemon_log, demo
from e2e.own_postgres import ROLE, OwnPostgres

NODES = {"a": ["main", "redis"], "b": ["persister1", "persister2"], "c": ["generic1", "sender1"]}
BY_CONFIG = ("persister1", "persister2")  # placed by their instance_map host, not by cluster.yaml
LEFT_OUT = ("pusher1", "background1")  # the demo's, not needed here: fewer processes on a small machine


class RealFiles:
    """The demo's config as Cluster wants it (root, shared, workers, write, env), its database
    (a name of its own) made in `postgres`."""

    def __init__(self, root: str, postgres: OwnPostgres) -> None:
        self.root, self.database = os.path.join(root, "d"), f"synapse_{uuid.uuid4().hex[:8]}"
        os.makedirs(os.path.join(self.root, "media_store"))
        names = ["main", "replication", "persister1", "persister2", "generic1", "redis"]
        self.ports = dict(zip(names, free_ports(len(names))))
        demo.dump(os.path.join(self.root, "log.yaml"), demo.LOG_CONFIG)
        self.shared = demo.shared_config(self.root, self.ports, {**ROLE, "database": self.database}, sys.executable)
        self.shared["database"]["args"] |= {"host": postgres.host, "port": postgres.port}
        for key in ("pusher_instances", "run_background_tasks_on"):
            del self.shared[key]
        self.workers = {n: doc for n, doc in demo.workers(self.root, self.ports).items() if n not in LEFT_OUT}
        demo.create_database(self.database, {**ROLE, "host": postgres.host, "port": postgres.port})

    def write(self) -> None:
        """Nothing shared to write: each host's copy is written by Cluster.write_files."""

    def env(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def real_cluster(root: str, hosts: Network, etcd: EtcdServer, postgres: OwnPostgres) -> Cluster:
    return Cluster(RealFiles(root, postgres), hosts, etcd, NODES, BY_CONFIG)


def move_persister2_to_c(cluster: Cluster) -> None:
    """persister2's instance_map host becomes c's address: the same files on every host."""
    cluster.d.shared["instance_map"]["persister2"]["host"] = cluster.hosts.addresses["c"]
    for node in cluster.nodes:
        cluster.write_files(node)


def unit_runs(cluster: Cluster) -> list[dict[str, Any]]:
    """Every process the three daemons ran, from their daemon.log: unit, node, pid, spawn and
    exit time (wall clock, shared by the namespaces; exit None: still running). `unit.stopped`
    (no pid: the process is gone) and `unit.exited` are logged once the daemon has reaped the
    process, so an exit time is never early."""
    runs: list[dict[str, Any]] = []
    for node in cluster.nodes:
        running: dict[str, dict[str, Any]] = {}  # unit -> its run in progress
        for e in daemon_log(os.path.join(cluster.state_dir(node), "daemon.log")):
            if e["event"] in ("unit.spawned", "unit.adopted"):
                running[e["unit"]] = {"name": e["unit"], "node": node, "pid": e["pid"], "start": e["t"], "exit": None}
                runs.append(running[e["unit"]])
            elif e["event"] in ("unit.stopped", "unit.exited") and e.get("unit") in running:
                running.pop(e["unit"])["exit"] = e["t"]
    return sorted(runs, key=lambda r: r["start"])


def overlaps(runs: list[dict[str, Any]], changed_at: float, moved: str, old_node: str) -> list[str]:
    """Where a process started with the new files (after `changed_at`) while the moved writer
    still ran at its old node: the new map beside the old writer, what must never be."""
    old = [r for r in runs if r["name"] == moved and r["node"] == old_node and r["start"] < changed_at]
    new = [r for r in runs if r["start"] >= changed_at]
    return [f"{n['name']} on {n['node']} (pid {n['pid']}) started while {moved} on {old_node} (pid {o['pid']}) ran"
            for o in old for n in new if o["exit"] is None or n["start"] < o["exit"]]
