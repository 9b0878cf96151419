"""A cluster stop's parts without etcd (issue 18): its order (the single-host stop order across
nodes, each step on every node that runs units of it; what synsup only probes left out), and a
node that goes down while it is asked, over the in-memory store."""

from __future__ import annotations

import asyncio
import time

import pytest
from memory_store import MemoryStore

from synsup.supervisor.cluster.cluster_stop import StopStep, stop_steps
from synsup.supervisor.cluster.membership import Keys
from synsup.supervisor.cluster.unit_requests import HALT, NodeDown, ask, pending
from synsup.supervisor.spec import UnitSpec


def spec(name: str, step: int, step_name: str, argv: tuple[str, ...] | None = ("python",)) -> UnitSpec:
    return UnitSpec(name, argv, step=step, step_name=step_name)


SPECS = [spec("postgres", 0, "PostgreSQL", argv=None), spec("redis", 0, "Redis"), spec("main", 1, "main"),
         spec("persister1", 2, "stream writers"), spec("persister2", 2, "stream writers"),
         spec("generic1", 3, "workers"), spec("sender1", 3, "workers")]
NODE_OF = {"postgres": "a", "redis": "a", "main": "a", "persister1": "b", "persister2": "c", "generic1": "c",
           "sender1": "b"}


def test_each_step_last_first_on_every_node_that_runs_units_of_it() -> None:
    assert stop_steps(SPECS, NODE_OF, ["a", "b", "c"]) == [
        StopStep("workers", {"b": ["sender1"], "c": ["generic1"]}),
        StopStep("stream writers", {"b": ["persister1"], "c": ["persister2"]}),
        StopStep("main", {"a": ["main"]}),
        StopStep("Redis", {"a": ["redis"]}),  # postgres: only probed, not stopped
    ]
    assert stop_steps(SPECS, NODE_OF, ["a", "b", "c"])[0].describe() == "workers (on b, c)"


def test_a_node_not_in_the_cluster_file_is_left_out() -> None:
    steps = stop_steps(SPECS, NODE_OF, ["a", "b"])
    assert [s.units for s in steps] == [{"b": ["sender1"]}, {"b": ["persister1"]}, {"a": ["main"]}, {"a": ["redis"]}]


def test_asking_a_node_whose_member_key_goes_ends_at_once_with_node_down() -> None:
    """A cluster stop asks each node with watch_member: a node whose lease ends (daemon killed, cut
    off) is named within about a second of its key going, not after the 120 s of an answer wait."""
    keys = Keys("/c/")

    async def body() -> tuple[float, list]:
        store = MemoryStore()
        await store.put(keys.member("c"), b"{}")
        asking = asyncio.create_task(ask(store, keys, "c", HALT, ["generic1"], watch_member=True))
        async with asyncio.timeout(10):  # the halt request is pending for c, or the test fails
            while not await pending(store, keys, "c"):
                await asyncio.sleep(0.01)
        began = time.monotonic()
        await store.delete(keys.member("c"))
        with pytest.raises(NodeDown, match="node c went down before it answered `halt`"):
            await asking
        return time.monotonic() - began, await store.get_prefix("/c/requests/")
    took, left = asyncio.run(body())
    assert took < 3 and left == []
