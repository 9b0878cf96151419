"""`synsup status --cluster`, read from the store directly (no daemon needed): every node of
cluster.yaml, up while its member key lives (its daemon keeps the lease alive), the leader, and
every unit of every node as its daemon published it (units/<node>); a down node's units (from
placed/<node>) with state "unknown" and no pid, and the plan in progress (cluster_plan.py):
its phase, the nodes it waits for, and whether one of them is down (blocked)."""

from __future__ import annotations

import json
import time
from typing import Any

from ..cluster_config import ClusterConfig
from .change_leader import member_digests, old_files
from .cluster_plan import ClusterPlan, Planner, plan_status
from .membership import Keys
from .store import KeyValue, Store


async def read_cluster_status(config: ClusterConfig, store: Store) -> dict[str, Any]:
    keys = Keys(config.store.prefix)
    members = {kv.key.removeprefix(keys.members): _record(kv) for kv in await store.get_prefix(keys.members)}
    leader = await store.get(keys.leader)
    names = [*config.nodes, *(n for n in members if n not in config.nodes)]
    units = await _units(store, keys, names)
    code = await _code_versions(store, keys)
    return {"cluster": config.name, "leader": leader.value.decode() if leader else None,
            "nodes": [_node(config, name, members.get(name), _version_of(members, leader))
                      | {"code_versions": code.get(name, [])} for name in names],
            "units": units,
            "config": await _config(store, keys), "plan": await _plan(store, keys, set(members))}


async def _config(store: Store, keys: Keys) -> dict[str, Any]:
    """The config digest applied across the cluster, and while some node has other files, the
    nodes that still have the applied (old) ones: the change waits for them."""
    applied = await store.get(keys.applied)
    digest = applied.value.decode() if applied else None
    return {"applied": digest, "old_files_on": old_files(await member_digests(store, keys), digest)}


async def _plan(store: Store, keys: Keys, up: set[str]) -> dict[str, Any] | None:
    planner = Planner(store, keys)
    plan, _ = await planner.read()
    if plan is None:
        return None
    acks = await store.get_prefix(planner.ack_key(plan, plan.phase, ""))
    return plan_status(plan, {kv.value.decode() for kv in acks}, up, await _notes(store, keys, plan))


async def _notes(store: Store, keys: Keys, plan: ClusterPlan) -> dict[str, str]:
    """Why a node did not acknowledge the phase in progress (its daemon wrote notes/<node>)."""
    notes = {}
    for kv in await store.get_prefix(keys.notes):
        note = _record(kv)
        if note.get("plan") == plan.id and note.get("phase") == plan.phase:
            notes[kv.key.removeprefix(keys.notes)] = str(note.get("reason"))
    return notes


async def _units(store: Store, keys: Keys, nodes: list[str]) -> list[dict[str, Any]]:
    live = {kv.key.removeprefix(keys.units): _record(kv).get("units") for kv in await store.get_prefix(keys.units)}
    placed = {kv.key.removeprefix(keys.placed): _list(kv) for kv in await store.get_prefix(keys.placed)}
    units = []
    for node in [*nodes, *sorted((live.keys() | placed.keys()) - set(nodes))]:
        published = live.get(node)
        if isinstance(published, list):
            units += [u for u in published if isinstance(u, dict)]
        else:
            units += [{"name": str(name), "node": node, "state": "unknown", "pid": None} for name in placed.get(node, [])]
    return units


async def _code_versions(store: Store, keys: Keys) -> dict[str, list[str]]:
    """node -> the application versions its units run, as it publishes them (up nodes only)."""
    found = {}
    for kv in await store.get_prefix(keys.units):
        versions = _record(kv).get("code_versions")
        if isinstance(versions, list):
            found[kv.key.removeprefix(keys.units)] = [str(v) for v in versions]
    return found


def _record(kv: KeyValue) -> dict[str, Any]:
    try:
        record = json.loads(kv.value)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _list(kv: KeyValue) -> list[Any]:
    try:
        value = json.loads(kv.value)
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def _version_of(members: dict[str, dict[str, Any]], leader: KeyValue | None) -> str | None:
    """The synsup version the leader runs: the one every node must run to take part in a change."""
    record = members.get(leader.value.decode()) if leader is not None else None
    return str(record["version"]) if record and record.get("version") else None


def _node(config: ClusterConfig, name: str, record: dict[str, Any] | None, leaders: str | None) -> dict[str, Any]:
    known = config.nodes.get(name)
    joined = record.get("joined") if record else None
    version = (record or {}).get("version")
    takes_part = None if record is None else leaders is None or version == leaders
    return {"name": name, "up": record is not None,
            "address": (record or {}).get("address") or (known.address if known else None),
            "config_digest": (record or {}).get("config_digest"), "version": version,
            "joined_seconds_ago": round(time.time() - joined, 1) if isinstance(joined, (int, float)) else None,
            "in_cluster_yaml": known is not None, "takes_part": takes_part,
            "why_not": None if takes_part in (None, True) else
            f"runs synsup {version}, the leader {leaders}: takes no part in changes until it runs {leaders}"}
