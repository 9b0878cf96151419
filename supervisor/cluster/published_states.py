"""This node's units in the store, and the other nodes' units as this node needs them.

Published: one key per node, units/<node> = {"node", "units": [{"name", "node", "state", "pid"}],
"code_versions": the versions of the application its units run (status --cluster shows a cluster
left on two after an upgrade halted)},
under the node's lease (it vanishes when the daemon is gone), written when a unit changes,
batched (the changes of BATCH seconds are one write, unchanged content none), and placed/<node>
(the names, no lease) so that status can list a down node's units. Stand-ins (`spec.reported`)
are not this node's units and are not published.

Followed: every units/<node> but our own, by a watch; a stand-in is reported ready while some
node publishes that unit ready, not ready when it publishes another state or its key vanishes
(lease ended). While the store is out of reach the last known readiness stays: a crash restart
behind a dependency seen ready goes on, nothing waiting for one never seen ready starts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any, Protocol

import structlog

from ..spec import UnitSpec
from .membership import Keys, Membership
from .store import Change, KeyValue, StoreError

BATCH = 0.2  # seconds of changes written together
RETRY = 1.0  # seconds before a failed write or a lost watch is tried again


class UnitView(Protocol):
    """What is read of an engine Unit (the cluster package does not import the engine)."""

    @property
    def spec(self) -> UnitSpec: ...

    @property
    def state(self) -> Enum: ...

    @property
    def pid(self) -> int | None: ...

    @property
    def held(self) -> bool: ...

    def report(self, ready: bool) -> None: ...


class UnitsView(Protocol):
    @property
    def units(self) -> Mapping[str, UnitView]: ...

    def add_listener(self, listener: Callable[[Any], None]) -> None: ...


def unit_records(node: str, units: Mapping[str, UnitView]) -> list[dict[str, Any]]:
    return [{"name": u.spec.name, "node": node, "state": u.state.value, "pid": u.pid, **({"held": True} if u.held else {})}
            for u in units.values() if not u.spec.reported]


def code_versions(units: Mapping[str, UnitView]) -> list[str]:
    """The versions of the application code this node's units run (two: an upgrade halted midway)."""
    return sorted({u.spec.version for u in units.values() if not u.spec.reported and u.spec.code_name
                   and u.spec.version})


def ready_names(kv: KeyValue) -> set[str]:
    try:
        units = json.loads(kv.value)["units"]
        return {u["name"] for u in units if u.get("state") == "ready"}
    except (ValueError, KeyError, TypeError):
        return set()


class UnitStates:
    def __init__(self, membership: Membership) -> None:
        self.membership = membership
        self.units: UnitsView | None = None
        self.node, self.store = membership.node, membership.store
        self.keys = Keys(membership.config.store.prefix)
        self._dirty = asyncio.Event()
        self._written: tuple[bytes, int] | None = None  # (value, lease) of the last write
        self._placed: bytes | None = None
        self._remote: dict[str, tuple[int, set[str]]] = {}  # node -> (mod revision, ready unit names)
        self._tasks: list[asyncio.Task[None]] = []
        self.log = structlog.get_logger().bind(node=self.node)

    async def start(self, units: UnitsView) -> None:
        """Join the cluster (an error if the store does not answer), then publish and follow `units`."""
        self.units = units
        self.membership.on_join = self._dirty.set
        await self.membership.start()
        units.add_listener(lambda unit: self._dirty.set())
        self._dirty.set()
        self._tasks = [asyncio.create_task(self._publish_loop()), asyncio.create_task(self._follow_loop())]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.membership.close()

    # -- publishing
    async def _publish_loop(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(BATCH)
            self._dirty.clear()
            try:
                await self.publish()
            except StoreError as e:
                self.log.warning("cluster.publish_failed", error=str(e))
                self._dirty.set()
                await asyncio.sleep(RETRY)

    async def publish(self) -> None:
        assert self.units is not None
        records = unit_records(self.node, self.units.units)
        value = json.dumps({"node": self.node, "units": records,
                            "code_versions": code_versions(self.units.units)}).encode()
        lease = self.membership.lease
        if (value, lease) != self._written:
            await self.store.put(self.keys.units + self.node, value, lease)
            self._written = (value, lease)
        placed = json.dumps([r["name"] for r in records]).encode()
        if placed != self._placed:
            await self.store.put(self.keys.placed + self.node, placed)
            self._placed = placed

    # -- following
    async def _follow_loop(self) -> None:
        while True:
            try:
                await self._follow()
            except StoreError as e:
                self.log.warning("cluster.follow_lost", error=str(e), kept="last known unit states")
            await asyncio.sleep(RETRY)

    async def _follow(self) -> None:
        async with self.store.watch(self.keys.units) as events:  # in place first: no change missed
            snapshot = await self.store.get_prefix(self.keys.units)
            for kv in snapshot:
                self._seen(kv, Change.PUT)
            present = {kv.key.removeprefix(self.keys.units) for kv in snapshot}
            for node, (revision, _) in list(self._remote.items()):
                if node not in present:  # its lease ended while we did not watch
                    self._remote[node] = (revision, set())
            self.report_remote()
            async for event in events:
                self._seen(event.kv, event.change)
                self.report_remote()

    def _seen(self, kv: KeyValue, change: Change) -> None:
        node = kv.key.removeprefix(self.keys.units)
        known = self._remote.get(node)
        if node == self.node or (known is not None and known[0] >= kv.mod_revision):
            return  # our own, or older than what the snapshot said
        self._remote[node] = (kv.mod_revision, ready_names(kv) if change is Change.PUT else set())

    def report_remote(self) -> None:
        """Each stand-in ready or not as the other nodes last published (again after stand-ins are added)."""
        ready = set().union(*(names for _, names in self._remote.values()))
        for unit in self.units.units.values() if self.units is not None else ():
            if unit.spec.reported:
                unit.report(unit.spec.name in ready)
