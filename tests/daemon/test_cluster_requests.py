"""Cluster-wide requests, the asking daemon's side (supervisor/daemon/cluster_requests.py) over
the in-memory store, the other nodes played by the test: `restart`, `pause` and `resume` without
units go to every node in cluster.yaml's order, units to the node that runs each, `--node N` to N
only; the replies come back as one, each unit marked with its node; a node's refusal is named."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

from memory_store import MemoryStore

from synsup.supervisor.cluster.membership import Keys
from synsup.supervisor.cluster.unit_requests import answer, pending
from synsup.supervisor.daemon.cluster_requests import UnitRequests
from synsup.supervisor.protocol import Refusal
from synsup.supervisor.spec import UnitSpec

KEYS = Keys("/c/")
NODE_OF = {"main": "a", "redis": "a", "persister1": "b", "generic1": "c", "sender1": "c"}


def asking_on_a(store: MemoryStore) -> UnitRequests:
    units = {n: SimpleNamespace(spec=UnitSpec(n, ("x",))) for n in ("main", "redis")}
    units["persister1"] = SimpleNamespace(spec=UnitSpec("persister1", None, reported=True))  # a stand-in
    node = SimpleNamespace(node="a", store=store, keys=KEYS, daemon=SimpleNamespace(supervisor=SimpleNamespace(units=units)),
                           base=SimpleNamespace(node_of=NODE_OF),
                           membership=SimpleNamespace(config=SimpleNamespace(nodes={"a": 0, "b": 0, "c": 0})))
    return UnitRequests(node)  # type: ignore[arg-type]


async def other_nodes(store: MemoryStore, seen: list[tuple[str, dict[str, Any]]], refuse: str = "") -> None:
    """Every node answers its requests (a too: the asking node's own part goes the same way), for
    at most a minute (the test cancels it long before)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for node in "abc":
            for key, request in await pending(store, KEYS, node):
                seen.append((node, request))
                units = request["units"] or [u for u, n in NODE_OF.items() if n == node]
                reply = {"ok": False, "error": "persister1 is needed by generic1"} if node == refuse else \
                    {"ok": True, "daemon": {"node": node}, "units": [{"name": u, "state": "ready"} for u in units]}
                await answer(store, key, reply)
        await asyncio.sleep(0.01)


def ask(raw: dict[str, Any], refuse: str = "") -> tuple[dict[str, Any] | None, list[tuple[str, dict[str, Any]]]]:
    async def body() -> tuple[dict[str, Any] | None, list[tuple[str, dict[str, Any]]]]:
        store, seen = MemoryStore(), []
        serving = asyncio.create_task(other_nodes(store, seen, refuse))
        try:
            async with asyncio.timeout(10):
                return await asking_on_a(store).forwarded(raw), seen
        finally:
            serving.cancel()
    return asyncio.run(body())


def test_pause_and_restart_without_units_go_to_every_node_in_order_and_come_back_as_one() -> None:
    reply, seen = ask({"cmd": "pause"})
    assert [(n, r["verb"], r["units"]) for n, r in seen] == [("a", "pause", []), ("b", "pause", []), ("c", "pause", [])]
    assert reply is not None and reply["ok"] and reply["daemon"] == {"node": "a"}, "the first node's daemon fields"
    assert [(u["node"], u["name"]) for u in reply["units"]] == [
        ("a", "main"), ("a", "redis"), ("b", "persister1"), ("c", "generic1"), ("c", "sender1")]
    reply, seen = ask({"cmd": "restart", "rolling": True})
    assert [(n, r.get("options")) for n, r in seen] == [(n, {"rolling": True}) for n in "abc"]


def test_units_go_to_the_node_that_runs_each_and_node_limits_to_one() -> None:
    reply, seen = ask({"cmd": "restart", "units": ["generic1", "main", "persister1"]})
    assert [(n, r["units"]) for n, r in seen] == [("a", ["main"]), ("b", ["persister1"]), ("c", ["generic1"])]
    assert reply is not None and [u["name"] for u in reply["units"]] == ["main", "persister1", "generic1"]
    reply, seen = ask({"cmd": "restart", "node": "c"})
    assert [(n, r["units"]) for n, r in seen] == [("c", [])]
    reply, seen = ask({"cmd": "stop", "units": ["main"], "node": "c"})
    assert seen == [] and reply == Refusal("--node c: main runs on node a, not c")


def test_a_request_for_this_nodes_units_only_is_handled_here_and_a_nodes_refusal_is_named() -> None:
    assert ask({"cmd": "restart", "units": ["main"]}) == (None, [])
    assert ask({"cmd": "restart", "node": "a"}) == (None, [])
    assert ask({"cmd": "stop"}) == (None, []), "stop without units stops this daemon"
    reply, _ = ask({"cmd": "stop", "units": ["persister1"]}, refuse="b")
    assert reply == Refusal("node b: persister1 is needed by generic1")
