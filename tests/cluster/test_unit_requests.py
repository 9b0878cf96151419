"""supervisor/cluster/unit_requests.py over the in-memory store: a request for another node's
unit is answered by that node in the same key, and the key is gone afterwards."""

from __future__ import annotations

import asyncio

import pytest
from memory_store import MemoryStore

from synsup.supervisor.cluster.membership import Keys
from synsup.supervisor.cluster.unit_requests import answer, ask, pending, route
from synsup.supervisor.errors import SynsupError

KEYS = Keys("/c/")


def test_a_request_is_answered_by_the_owning_node_and_its_key_removed() -> None:
    async def body() -> tuple[dict, list, list]:
        store = MemoryStore()
        asking = asyncio.create_task(ask(store, KEYS, "c", "restart", ["generic1"]))
        async with asyncio.timeout(10):  # the request key appears, or the test fails
            while not (seen := await pending(store, KEYS, "c")):
                await asyncio.sleep(0.01)
        assert await pending(store, KEYS, "b") == []
        key, request = seen[0]
        await answer(store, key, {"ok": True, "units": [{"name": "generic1", "state": "ready"}]})
        return await asking, request, await store.get_prefix("/c/requests/")
    reply, request, left = asyncio.run(body())
    assert request == {"verb": "restart", "units": ["generic1"], "state": "pending"}
    assert reply == {"ok": True, "units": [{"name": "generic1", "state": "ready"}]}
    assert left == []


def test_a_node_that_does_not_answer_is_named_and_the_request_withdrawn() -> None:
    async def body() -> list:
        store = MemoryStore()
        with pytest.raises(SynsupError, match="node c did not answer `stop generic1` within 0s"):
            await ask(store, KEYS, "c", "stop", ["generic1"], timeout=0.2)
        return await store.get_prefix("/c/requests/")
    assert asyncio.run(body()) == []


NODE_OF = {"main": "a", "redis": "a", "persister1": "b", "generic1": "c", "sender1": "c"}


def test_a_request_goes_to_the_node_of_each_unit_named_and_without_units_to_every_node() -> None:
    assert route(["generic1", "persister1", "main"], NODE_OF, "abc", "a", None) == {
        "a": ["main"], "b": ["persister1"], "c": ["generic1"]}
    assert route([], NODE_OF, "abc", "b", None) == {"a": [], "b": [], "c": []}
    assert route([], NODE_OF, "abc", "b", "c") == {"c": []}, "--node N: that node only"
    assert route(["generic1", "sender1"], NODE_OF, "abc", "a", "c") == {"c": ["generic1", "sender1"]}
    assert route(["nosuch"], NODE_OF, "abc", "a", None) == {"a": ["nosuch"]}, "unknown here: this node says so"
    with pytest.raises(SynsupError, match=r"^--node c: main runs on node a, not c$"):
        route(["main", "generic1"], NODE_OF, "abc", "a", "c")
    with pytest.raises(SynsupError, match=r"^--node d: not a node of the cluster \(its nodes: a, b, c\)$"):
        route([], NODE_OF, "abc", "a", "d")


def test_a_request_carries_its_options_to_the_node_that_serves_it() -> None:
    async def body() -> tuple[dict, dict]:
        store = MemoryStore()
        asking = asyncio.create_task(ask(store, KEYS, "c", "restart", [], options={"rolling": True}))
        async with asyncio.timeout(10):
            while not (seen := await pending(store, KEYS, "c")):
                await asyncio.sleep(0.01)
        key, request = seen[0]
        await answer(store, key, {"ok": True, "units": []})
        return await asking, request
    reply, request = asyncio.run(body())
    assert request == {"verb": "restart", "units": [], "options": {"rolling": True}, "state": "pending"}
    assert reply == {"ok": True, "units": []}
