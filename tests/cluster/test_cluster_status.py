"""status --cluster (supervisor/cluster/cluster_status.py, cli/cluster.py) over the in-memory
store: a node that runs another synsup version than the leader is shown with its version and as
taking no part (the leader waits for it before any change), and the status is degraded (exit 1)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from memory_store import MemoryStore

from synsup.supervisor.cli.cluster import cluster_table
from synsup.supervisor.cluster.cluster_status import read_cluster_status
from synsup.supervisor.cluster.membership import Keys
from synsup.supervisor.cluster_config import ClusterConfig, Node, StoreConfig

KEYS = Keys("/c/")
CONFIG = ClusterConfig("cluster.yaml", "c", StoreConfig(("http://10.0.0.9:2379",), KEYS.prefix),
                       {n: Node(n, f"10.0.0.{i}") for i, n in enumerate("abc", 1)}, {})


def status(versions: dict[str, str], leader: str = "a") -> dict[str, Any]:
    async def body() -> dict[str, Any]:
        store = MemoryStore()
        for node, version in versions.items():
            record = {"node": node, "address": CONFIG.nodes[node].address, "version": version,
                      "config_digest": "d1", "joined": 0.0}
            await store.put(KEYS.member(node), json.dumps(record).encode())
        await store.put(KEYS.leader, leader.encode())
        return await read_cluster_status(CONFIG, store)
    return asyncio.run(body())


def test_a_node_with_another_synsup_version_is_shown_with_it_as_taking_no_part() -> None:
    report = status({"a": "1.4.0", "b": "1.4.0", "c": "1.3.2"})
    assert [(n["name"], n["version"], n["takes_part"]) for n in report["nodes"]] == [
        ("a", "1.4.0", True), ("b", "1.4.0", True), ("c", "1.3.2", False)]
    assert report["nodes"][2]["why_not"] == "runs synsup 1.3.2, the leader 1.4.0: takes no part in changes " \
        "until it runs 1.4.0"
    table = cluster_table(report)
    assert "  c                up     10.0.0.3                 1.3.2" in table
    assert "  versions: c runs synsup 1.3.2, the leader 1.4.0: takes no part in changes until it runs 1.4.0" in table


def test_every_node_on_the_leaders_version_takes_part_and_a_down_node_is_not_judged() -> None:
    report = status({"a": "1.4.0", "b": "1.4.0"})
    assert [(n["name"], n["takes_part"], n["why_not"]) for n in report["nodes"]] == [
        ("a", True, None), ("b", True, None), ("c", None, None)]
    assert "versions:" not in cluster_table(report)
