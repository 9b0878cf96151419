"""supervisor/cluster/unit_requests.py over the in-memory store: a request for another node's
unit is answered by that node in the same key, and the key is gone afterwards."""

from __future__ import annotations

import asyncio

import pytest
from memory_store import MemoryStore

from synsup.supervisor.cluster.membership import Keys
from synsup.supervisor.cluster.unit_requests import answer, ask, pending
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
