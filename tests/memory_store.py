"""The Store protocol (supervisor/cluster/store.py) in memory, for the planner's rules: one
revision counter as etcd keeps it, leases that end when the test says (`expire`), a transaction
as one step. No watch: the planner reads and writes, it does not follow."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager

from synsup.supervisor.cluster.store import Condition, Exists, KeyValue, Lease, StoreUnreachable, WatchEvent


class MemoryStore:
    def __init__(self) -> None:
        self.revision = 0
        self.keys: dict[str, KeyValue] = {}
        self.leases: dict[int, int] = {}  # id -> ttl
        self.down = False  # every call fails as if no endpoint answered

    def _check(self) -> None:
        if self.down:
            raise StoreUnreachable("the store is down (test)")

    def _write(self, key: str, value: bytes, lease: int = 0) -> int:
        self.revision += 1
        old = self.keys.get(key)
        self.keys[key] = KeyValue(key, value, self.revision, old.create_revision if old else self.revision, lease)
        return self.revision

    async def get(self, key: str) -> KeyValue | None:
        self._check()
        return self.keys.get(key)

    async def get_prefix(self, prefix: str) -> list[KeyValue]:
        self._check()
        return [self.keys[k] for k in sorted(self.keys) if k.startswith(prefix)]

    async def put(self, key: str, value: bytes, lease: int = 0) -> int:
        self._check()
        return self._write(key, value, lease)

    async def create(self, key: str, value: bytes, lease: int = 0) -> bool:
        self._check()
        if key in self.keys:
            return False
        self._write(key, value, lease)
        return True

    async def replace(self, key: str, value: bytes, mod_revision: int, lease: int = 0) -> bool:
        self._check()
        if key not in self.keys or self.keys[key].mod_revision != mod_revision:
            return False
        self._write(key, value, lease)
        return True

    def holds(self, condition: Condition) -> bool:
        kv = self.keys.get(condition.key)
        if isinstance(condition, Exists):
            return kv is not None
        return (kv.mod_revision if kv else 0) == condition.mod_revision

    async def transact(self, conditions: Sequence[Condition], puts: Sequence[tuple[str, bytes]]) -> bool:
        self._check()
        if not all(self.holds(c) for c in conditions):
            return False
        self.revision += 1  # one transaction, one revision, as etcd does
        for key, value in puts:
            old = self.keys.get(key)
            self.keys[key] = KeyValue(key, value, self.revision, old.create_revision if old else self.revision)
        return True

    async def delete(self, key: str) -> bool:
        self._check()
        if self.keys.pop(key, None) is None:
            return False
        self.revision += 1
        return True

    async def grant(self, ttl: int) -> Lease:
        self._check()
        self.revision += 1
        self.leases[self.revision] = ttl
        return Lease(self.revision, ttl)

    async def keepalive(self, lease: int) -> int:
        self._check()
        return self.leases.get(lease, 0)

    async def revoke(self, lease: int) -> None:
        self._check()
        self.expire(lease)

    def expire(self, lease: int) -> None:
        """The lease ends (its holder stopped renewing it): its keys vanish."""
        self.leases.pop(lease, None)
        for key in [k for k, kv in self.keys.items() if kv.lease == lease]:
            del self.keys[key]
        self.revision += 1

    def watch(self, prefix: str, start_revision: int = 0) -> AbstractAsyncContextManager[AsyncIterator[WatchEvent]]:
        raise NotImplementedError("the in-memory store has no watch")

    async def close(self) -> None:
        pass
