"""This daemon as a member of its cluster: `members/<node>` (address, synsup version, config
digest) under a lease it keeps alive, and the `leader` key, created if absent under the same
lease (the first daemon up leads; when its lease ends, the next keepalive of another takes it).
The daemon starts it before any unit and closes it last; closing revokes the lease, so the
member and leader keys vanish at once instead of after the TTL."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

import structlog

from ..cluster_config import ClusterConfig
from ..errors import SynsupError
from .store import Store, StoreError, StoreUnreachable

CLOSE_TIMEOUT = 5.0  # revoking the lease on the way out; a store that does not answer lets it expire


@dataclass(frozen=True)
class Keys:
    """Where the cluster's keys are, under store.prefix."""

    prefix: str

    @property
    def members(self) -> str:
        return f"{self.prefix}members/"

    def member(self, node: str) -> str:
        return f"{self.members}{node}"

    @property
    def leader(self) -> str:
        return f"{self.prefix}leader"

    @property
    def units(self) -> str:
        """units/<node>: that node's units and their states, under its lease."""
        return f"{self.prefix}units/"

    @property
    def applied(self) -> str:
        """The config digest every node runs since the last plan was done (the leader writes it)."""
        return f"{self.prefix}applied"

    @property
    def notes(self) -> str:
        """notes/<node>: why that node did not acknowledge a phase (a step failed, other files)."""
        return f"{self.prefix}notes/"

    @property
    def placed(self) -> str:
        """placed/<node>: the names of that node's units, kept when it goes down (no lease)."""
        return f"{self.prefix}placed/"


@dataclass(frozen=True)
class MemberRecord:
    """What members/<node> holds."""

    node: str
    address: str
    version: str
    config_digest: str
    joined: float  # wall-clock time this daemon (re)joined

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()


def config_digest(paths: list[str]) -> str:
    """sha256 over the config files (a directory: its *.yaml files, sorted), by base name and
    content: equal on every node that has the same files, wherever they are."""
    digest = hashlib.sha256()
    for path in paths:
        files = sorted(os.path.join(path, n) for n in os.listdir(path) if n.endswith(".yaml")) \
            if os.path.isdir(path) else [path]
        for file in files:
            digest.update(os.path.basename(file).encode() + b"\0")
            try:
                with open(file, "rb") as f:
                    digest.update(hashlib.sha256(f.read()).digest())
            except OSError:
                digest.update(b"unreadable")
    return digest.hexdigest()


class Membership:
    def __init__(self, config: ClusterConfig, node: str, record: MemberRecord, store: Store,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.config, self.node, self.record, self.store = config, node, record, store
        self.keys = Keys(config.store.prefix)
        self.lease = 0
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None
        self.on_join: Callable[[], None] = lambda: None  # after each (re)join: a new lease, keys to write again
        self.on_lease_lost: Callable[[], None] = lambda: None  # once per loss: the lease has surely ended
        self.may_lead: Callable[[], bool] = lambda: True  # False: never claims the leader key (resign)
        self._renewed = 0.0  # monotonic time of the last renewal the store answered
        self._lost = False  # on_lease_lost was called for the lease held now
        self._unanswered = False  # the last renewal failed: the store did not answer
        self.log = structlog.get_logger().bind(node=node, cluster=config.name)

    async def start(self) -> None:
        """Join (register, maybe lead) and keep the lease alive; an error if the store does not answer:
        the daemon does not start half-joined."""
        try:
            await self._join()
        except StoreUnreachable as e:
            raise SynsupError(f"{self.config.file}: store.endpoints: {e}; start etcd there or correct "
                              "the endpoints") from None
        self._task = asyncio.create_task(self._keep_alive())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.store.revoke(self.lease)
            self.log.info("cluster.left")
        except (StoreError, TimeoutError) as e:
            self.log.warning("cluster.leave_failed", error=str(e) or "timeout", lease_expires_in=self.config.store.ttl)
        await self.store.close()

    @property
    def lease_held(self) -> bool:
        """False from the moment the lease is known lost until the node has joined again."""
        return not self._lost

    async def publish_digest(self, digest: str) -> None:
        """The config files on this node changed (and checked out): say so in members/<node>, which
        the leader compares before it plans a change across nodes."""
        self.record = MemberRecord(**{**asdict(self.record), "config_digest": digest})
        await self.store.put(self.keys.member(self.node), self.record.encode(), self.lease)

    async def _join(self) -> None:
        self.lease = (await self.store.grant(self.config.store.ttl)).id
        self._renewed, self._lost, self._unanswered = time.monotonic(), False, False
        self.record = MemberRecord(**{**asdict(self.record), "joined": time.time()})
        await self.store.put(self.keys.member(self.node), self.record.encode(), self.lease)
        self.log.info("cluster.joined", lease=self.lease, ttl=self.config.store.ttl)
        self.on_join()
        await self.claim_leader()

    async def resign(self) -> None:
        """Give the leader key up if this node holds it (it may not lead now, `may_lead`): the next
        keepalive of another daemon takes it."""
        kv = await self.store.get(self.keys.leader)
        if kv is not None and kv.lease == self.lease:
            await self.store.delete(self.keys.leader)
            self.log.info("cluster.resigned")

    async def claim_leader(self) -> None:
        if self.may_lead() and await self.store.create(self.keys.leader, self.node.encode(), self.lease):
            self.log.info("cluster.leader")

    async def _keep_alive(self) -> None:
        """Renew the lease every third of its TTL; a lease that expired meanwhile (the store was out
        of reach) is replaced by a new one and the member key written again."""
        while True:
            await self._sleep(self.config.store.ttl / 3)
            try:
                if await self.store.keepalive(self.lease) > 0:
                    self._renewed = time.monotonic()
                    self._store_back()
                    await self.claim_leader()
                else:
                    self._lease_lost()
                    await self._join()
            except StoreError as e:
                self._unanswered = True
                self.log.warning("cluster.store_unreachable", error=str(e))
                if time.monotonic() - self._renewed >= self.config.store.ttl:
                    self._lease_lost()  # the store cannot say so: a TTL since the last renewal, it has ended
            except Exception:  # a malformed answer: renew again next period rather than drop out
                self.log.exception("cluster.keepalive_failed")

    def _store_back(self) -> None:
        """The store answers again and the lease outlived the outage (etcd renews leases when its
        quorum returns): as after a rejoin, what this node writes is written again and what it
        follows read again (a watch kept open meanwhile saw nothing of what failed to be written)."""
        if self._unanswered:
            self._unanswered, self._lost = False, False
            self.log.info("cluster.store_back", lease=self.lease)
            self.on_join()

    def _lease_lost(self) -> None:
        if not self._lost:
            self._lost = True
            self.log.warning("cluster.lease_lost", lease=self.lease)
            self.on_lease_lost()
