"""`synsup status --cluster`, read from the store directly (no daemon needed): every node of
cluster.yaml, up while its member key lives (its daemon keeps the lease alive), and the leader.
Units and the plan in progress are not in the store yet: `units` is [] and `plan` null."""

from __future__ import annotations

import json
import time
from typing import Any

from ..cluster_config import ClusterConfig
from .membership import Keys
from .store import KeyValue, Store


async def read_cluster_status(config: ClusterConfig, store: Store) -> dict[str, Any]:
    keys = Keys(config.store.prefix)
    members = {kv.key.removeprefix(keys.members): _record(kv) for kv in await store.get_prefix(keys.members)}
    leader = await store.get(keys.leader)
    names = [*config.nodes, *(n for n in members if n not in config.nodes)]
    return {"cluster": config.name, "leader": leader.value.decode() if leader else None,
            "nodes": [_node(config, name, members.get(name)) for name in names], "units": [], "plan": None}


def _record(kv: KeyValue) -> dict[str, Any]:
    try:
        record = json.loads(kv.value)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _node(config: ClusterConfig, name: str, record: dict[str, Any] | None) -> dict[str, Any]:
    known = config.nodes.get(name)
    joined = record.get("joined") if record else None
    return {"name": name, "up": record is not None,
            "address": (record or {}).get("address") or (known.address if known else None),
            "config_digest": (record or {}).get("config_digest"), "version": (record or {}).get("version"),
            "joined_seconds_ago": round(time.time() - joined, 1) if isinstance(joined, (int, float)) else None,
            "in_cluster_yaml": known is not None}
