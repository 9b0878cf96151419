"""The store as the cluster code sees it: a small interface of our own (get, put, create if
absent, compare-and-set on the mod revision, leases, a watch on a prefix, delete), so that the
coordination never depends on one client library. `etcd_gateway.EtcdGateway` implements it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from ..errors import EXIT_NOT_RUNNING, SynsupError


class StoreError(SynsupError):
    """The store answered, but refused (bad credentials, a request it rejects)."""


class StoreUnreachable(StoreError):
    """No endpoint answers (down, partitioned, lost its quorum): `status --cluster` exits 3."""

    exit_code = EXIT_NOT_RUNNING


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes
    mod_revision: int  # the store's revision of the last change to this key: what CAS compares
    create_revision: int
    lease: int = 0  # the lease the key lives under; 0: none


@dataclass(frozen=True)
class Lease:
    id: int
    ttl: int  # seconds granted


class Change(Enum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True)
class WatchEvent:
    change: Change
    kv: KeyValue  # after a DELETE: the key and the revision that deleted it, value b""


@dataclass(frozen=True)
class Unchanged:
    """A transaction's condition: the key's last change is `mod_revision` (0: the key is absent)."""

    key: str
    mod_revision: int


@dataclass(frozen=True)
class Exists:
    """A transaction's condition: the key exists."""

    key: str


Condition = Unchanged | Exists


class Store(Protocol):
    async def get(self, key: str) -> KeyValue | None: ...

    async def get_prefix(self, prefix: str) -> list[KeyValue]:
        """Every key starting with `prefix`, in key order."""
        ...

    async def put(self, key: str, value: bytes, lease: int = 0) -> int:
        """Write unconditionally; the store's revision after it."""
        ...

    async def create(self, key: str, value: bytes, lease: int = 0) -> bool:
        """Write only if the key does not exist (one transaction); whether it was written."""
        ...

    async def replace(self, key: str, value: bytes, mod_revision: int, lease: int = 0) -> bool:
        """Write only if the key is unchanged since `mod_revision` (compare-and-set); whether it was."""
        ...

    async def transact(self, conditions: Sequence[Condition], puts: Sequence[tuple[str, bytes]]) -> bool:
        """Write every (key, value) of `puts` (no lease) only if every condition holds, all in one
        transaction; whether it was written."""
        ...

    async def delete(self, key: str) -> bool:
        """Whether the key existed."""
        ...

    async def grant(self, ttl: int) -> Lease: ...

    async def keepalive(self, lease: int) -> int:
        """Renew a lease; the seconds it has now, 0 when it has expired (its keys are gone)."""
        ...

    async def revoke(self, lease: int) -> None:
        """End a lease now: its keys vanish at once."""
        ...

    def watch(self, prefix: str, start_revision: int = 0) -> AbstractAsyncContextManager[AsyncIterator[WatchEvent]]:
        """`async with store.watch(p) as events:` the watch is in place on entry (nothing written
        after it is missed); `async for event in events` until the block is left."""
        ...

    async def close(self) -> None: ...
