"""Unit states in the store (supervisor/cluster/published_states.py) against a real etcd: each daemon
publishes its own units (name, node, state, pid) as one key, units/<node>, under its node's lease,
in batches; it follows the other nodes' keys and reports each stand-in (a unit of another node
one of its units depends on) ready while that node says so. In process, with scripted units."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from synsup.supervisor.cluster.cluster_status import read_cluster_status
from synsup.supervisor.cluster.etcd_gateway import EtcdGateway
from synsup.supervisor.cluster.membership import MemberRecord, Membership
from synsup.supervisor.cluster.published_states import UnitStates
from synsup.supervisor.cluster.store import StoreUnreachable, WatchEvent
from synsup.supervisor.cluster_config import ClusterConfig
from synsup.supervisor.engine.unit_state import UnitState
from synsup.supervisor.spec import UnitSpec

pytestmark = pytest.mark.integration
TTL = 2
S = UnitState


@dataclass
class ScriptedUnit:
    spec: UnitSpec
    state: UnitState = S.STOPPED
    pid: int | None = None
    held: bool = False
    reports: list[bool] = field(default_factory=list)

    def report(self, ready: bool) -> None:
        self.reports.append(ready)


class ScriptedUnits:
    """What UnitStates needs of a Supervisor: its units and a change listener."""

    def __init__(self, *specs: UnitSpec) -> None:
        self.units = {s.name: ScriptedUnit(s) for s in specs}
        self.listeners: list[Callable[[Any], None]] = []

    def add_listener(self, listener: Callable[[Any], None]) -> None:
        self.listeners.append(listener)

    def move(self, name: str, state: UnitState, pid: int | None = None) -> None:
        unit = self.units[name]
        unit.state, unit.pid = state, pid
        for listener in self.listeners:
            listener(unit)


class CountingStore(EtcdGateway):
    """Counts the writes of units/ keys; `cut` makes every call fail as if the network were down,
    and ends a watch at its next event."""

    puts = 0
    cut = False

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.cut:
            raise StoreUnreachable("cut off by the test")
        return await super().call(path, body)

    async def put(self, key: str, value: bytes, lease: int = 0) -> int:
        self.puts += "/units/" in key
        return await super().put(key, value, lease)

    @contextlib.asynccontextmanager
    async def watch(self, prefix: str, start_revision: int = 0) -> AsyncIterator[AsyncIterator[WatchEvent]]:
        if self.cut:
            raise StoreUnreachable("cut off by the test")
        async with super().watch(prefix, start_revision) as events:
            yield self._unless_cut(events)

    async def _unless_cut(self, events: AsyncIterator[WatchEvent]) -> AsyncIterator[WatchEvent]:
        async for event in events:
            if self.cut:
                raise StoreUnreachable("cut off by the test")
            yield event


class Node:
    """A node's UnitStates and the units it publishes (started with `start`)."""

    def __init__(self, cluster: ClusterConfig, name: str, units: ScriptedUnits) -> None:
        record = MemberRecord(name, cluster.nodes[name].address, "9", "d", 0.0)
        self.states = UnitStates(Membership(cluster, name, record, CountingStore(list(cluster.store.endpoints))))
        self.units = units
        self.membership = self.states.membership

    async def start(self) -> None:
        await self.states.start(self.units)

    async def close(self) -> None:
        await self.states.close()


def node(cluster: ClusterConfig, name: str, units: ScriptedUnits) -> Node:
    return Node(cluster, name, units)


def store_of(states: Node) -> CountingStore:
    assert isinstance(states.membership.store, CountingStore)
    return states.membership.store


async def until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `condition` (a function, or a coroutine function) until it is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.02)


async def published(cluster: ClusterConfig, name: str) -> list[dict[str, Any]] | None:
    got = await EtcdGateway(list(cluster.store.endpoints)).get(f"{cluster.store.prefix}units/{name}")
    return json.loads(got.value)["units"] if got else None


async def absent(cluster: ClusterConfig, name: str) -> bool:
    return await published(cluster, name) is None


def run(body: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(body())


def local(name: str) -> UnitSpec:
    return UnitSpec(name, ("run", name))


def remote(name: str) -> UnitSpec:
    return UnitSpec(name, None, reported=True)


def test_a_node_publishes_its_own_units_under_its_lease_in_batches(cluster: ClusterConfig) -> None:
    async def body() -> None:
        units = ScriptedUnits(local("redis"), local("main"), remote("persister1"))
        a = node(cluster, "a", units)
        await a.start()
        try:
            for state, pid in ((S.WAITING, None), (S.STARTING, 41), (S.READY, 41)):
                units.move("redis", state, pid)  # three changes at once: one write
            units.move("main", S.STARTING, 42)
            want = [{"name": "redis", "node": "a", "state": "ready", "pid": 41},
                    {"name": "main", "node": "a", "state": "starting", "pid": 42}]
            await until(lambda: store_of(a).puts, 5, "a first write")
            assert await until(lambda: published(cluster, "a"), 5, "the key") is not None
            assert await published(cluster, "a") == want, "stand-ins are not this node's units"
            assert store_of(a).puts == 1, "the changes of one moment are one write"
            units.move("main", S.READY, 42)
            await until(lambda: store_of(a).puts == 2, 5, "the next change written")
            assert (await published(cluster, "a") or [])[1]["state"] == "ready"
        finally:
            await a.close()
        assert await published(cluster, "a") is None, "the key lives under the node's lease"
    run(body)


def test_a_stand_in_is_ready_while_its_node_publishes_it_ready(cluster: ClusterConfig) -> None:
    async def body() -> None:
        on_a, on_b = ScriptedUnits(local("main")), ScriptedUnits(remote("main"), local("persister1"))
        a, b = node(cluster, "a", on_a), node(cluster, "b", on_b)
        await a.start()
        await b.start()
        stand_in = on_b.units["main"]
        try:
            on_a.move("main", S.READY, 7)
            await until(lambda: stand_in.reports[-1:] == [True], 5, "main reported ready on b")
            on_a.move("main", S.BACKOFF)
            await until(lambda: stand_in.reports[-1:] == [False], 5, "main reported not ready on b")
            on_a.move("main", S.READY, 8)
            await until(lambda: stand_in.reports[-1:] == [True], 5, "main ready again")
            await a.close()
            await until(lambda: stand_in.reports[-1:] == [False], 5, "main unknown once a's lease ends")
        finally:
            await b.close()
            await a.close()
    run(body)


def test_a_node_cut_off_from_the_store_keeps_the_last_known_readiness(cluster: ClusterConfig) -> None:
    """The issue: a node that loses the store restarts crashed units with the same map and starts
    nothing new; so a stand-in seen ready stays ready (a crash restart of its dependent goes on),
    one never seen ready stays not ready (nothing new starts)."""
    async def body() -> None:
        on_a, on_b = ScriptedUnits(local("main")), ScriptedUnits(remote("main"), local("persister1"))
        a, b = node(cluster, "a", on_a), node(cluster, "b", on_b)
        await a.start()
        await b.start()
        stand_in = on_b.units["main"]
        try:
            on_a.move("main", S.READY, 7)
            await until(lambda: stand_in.reports[-1:] == [True], 5, "main reported ready on b")
            store_of(b).cut = True
            on_a.move("main", S.BACKOFF)  # b does not learn it: its watch ends at this event
            await until(lambda: absent(cluster, "b"), TTL + 3, "b's lease to end")
            assert stand_in.reports[-1] is True, "the last known readiness stays while the store is away"
            store_of(b).cut = False
            await until(lambda: stand_in.reports[-1:] == [False], 10, "b to follow again once back")
            assert await until(lambda: published(cluster, "b"), TTL + 3, "b to publish again under a new lease")
        finally:
            await b.close()
            await a.close()
    run(body)


def test_status_lists_every_unit_of_every_node_and_a_down_nodes_as_unknown(cluster: ClusterConfig) -> None:
    async def body() -> tuple[dict[str, Any], dict[str, Any]]:
        on_a, on_b = ScriptedUnits(local("main")), ScriptedUnits(remote("main"), local("persister1"))
        a, b = node(cluster, "a", on_a), node(cluster, "b", on_b)
        await a.start()
        await b.start()
        store = EtcdGateway(list(cluster.store.endpoints))
        try:
            on_a.move("main", S.READY, 7)
            on_b.move("persister1", S.READY, 9)
            deadline = time.monotonic() + 5
            while len((report := await read_cluster_status(cluster, store))["units"]) < 2 \
                    or any(u["state"] != "ready" for u in report["units"]):
                assert time.monotonic() < deadline, report
                await asyncio.sleep(0.05)
            await b.close()
            return report, await read_cluster_status(cluster, store)
        finally:
            await b.close()
            await a.close()
    ready, b_down = run(body)
    assert ready["units"] == [{"name": "main", "node": "a", "state": "ready", "pid": 7},
                              {"name": "persister1", "node": "b", "state": "ready", "pid": 9}]
    assert b_down["units"] == [{"name": "main", "node": "a", "state": "ready", "pid": 7},
                               {"name": "persister1", "node": "b", "state": "unknown", "pid": None}]
