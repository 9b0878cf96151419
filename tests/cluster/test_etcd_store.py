"""The store client (supervisor/cluster/etcd_gateway.py) against a real etcd: each operation the
coordination relies on, and the way it fails."""

from __future__ import annotations

import asyncio
import pathlib
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import yaml
from etcd_server import EtcdServer, certificates, running_etcd
from helpers import free_ports

from synsup.supervisor.cluster.etcd_gateway import EtcdGateway, prefix_end
from synsup.supervisor.cluster.http_json import Endpoint, HttpError, post
from synsup.supervisor.cluster.store import Change, StoreError, StoreUnreachable, WatchEvent
from synsup.supervisor.cluster_config import read_cluster_config

pytestmark = pytest.mark.integration


@pytest.fixture
def prefix() -> str:
    """Keys of this test only (the etcd is shared by the module's tests)."""
    return f"/test/{uuid.uuid4().hex}/"


def run(etcd: EtcdServer, body: Callable[[EtcdGateway], Awaitable[Any]], *endpoints: str) -> Any:
    async def go() -> Any:
        store = EtcdGateway(list(endpoints) or [etcd.url])
        try:
            return await body(store)
        finally:
            await store.close()
    return asyncio.run(go())


def test_put_then_get_and_get_prefix(etcd: EtcdServer, prefix: str) -> None:
    async def body(store: EtcdGateway) -> None:
        revision = await store.put(prefix + "a", b"\x00one\xff")
        await store.put(prefix + "b", b"two")
        got = await store.get(prefix + "a")
        assert got is not None and got.value == b"\x00one\xff" and got.mod_revision == revision
        assert await store.get(prefix + "missing") is None
        assert [(kv.key, kv.value) for kv in await store.get_prefix(prefix)] == [(prefix + "a", b"\x00one\xff"),
                                                                               (prefix + "b", b"two")]
        assert await store.delete(prefix + "a") and not await store.delete(prefix + "a")
        assert await store.get(prefix + "a") is None
    run(etcd, body)


def test_create_if_absent_loses_to_an_existing_key(etcd: EtcdServer, prefix: str) -> None:
    async def body(store: EtcdGateway) -> None:
        assert await store.create(prefix + "leader", b"node-a")
        assert not await store.create(prefix + "leader", b"node-b")
        got = await store.get(prefix + "leader")
        assert got is not None and got.value == b"node-a"
    run(etcd, body)


def test_compare_and_set_fails_on_a_stale_revision(etcd: EtcdServer, prefix: str) -> None:
    async def body(store: EtcdGateway) -> None:
        await store.put(prefix + "plan", b"phase-1")
        seen = await store.get(prefix + "plan")
        assert seen is not None
        assert await store.replace(prefix + "plan", b"phase-2", seen.mod_revision)
        assert not await store.replace(prefix + "plan", b"phase-2-again", seen.mod_revision), "stale revision"
        now = await store.get(prefix + "plan")
        assert now is not None and now.value == b"phase-2" and now.mod_revision > seen.mod_revision
        assert not await store.replace(prefix + "absent", b"x", seen.mod_revision)
    run(etcd, body)


def test_a_lease_expires_and_its_keys_vanish(etcd: EtcdServer, prefix: str) -> None:
    async def body(store: EtcdGateway) -> float:
        lease = await store.grant(2)
        assert lease.ttl == 2
        await store.put(prefix + "members/a", b"up", lease.id)
        kept = await store.get(prefix + "members/a")
        assert kept is not None and kept.lease == lease.id
        assert 0 < await store.keepalive(lease.id) <= 2
        granted = time.monotonic()
        while await store.get(prefix + "members/a") is not None:
            assert time.monotonic() - granted < 10, "the key outlived its lease by far"
            await asyncio.sleep(0.1)
        assert await store.keepalive(lease.id) == 0, "an expired lease is not renewed"
        return time.monotonic() - granted
    gone_after = run(etcd, body)
    assert gone_after >= 1.0, "the key went before its lease could have expired"


def test_keepalive_keeps_a_lease_and_revoke_ends_it_at_once(etcd: EtcdServer, prefix: str) -> None:
    async def body(store: EtcdGateway) -> None:
        lease = await store.grant(2)
        await store.put(prefix + "k", b"v", lease.id)
        end = time.monotonic() + 3.5
        while time.monotonic() < end:  # longer than the TTL, renewed every half second
            assert await store.keepalive(lease.id) > 0
            await asyncio.sleep(0.5)
        assert await store.get(prefix + "k") is not None
        await store.revoke(lease.id)
        assert await store.get(prefix + "k") is None
        await store.revoke(lease.id)  # twice (or after expiry): no error
    run(etcd, body)


def test_a_watch_sees_a_put_and_a_delete(etcd: EtcdServer, prefix: str) -> None:
    async def body(store: EtcdGateway) -> list[WatchEvent]:
        seen: list[WatchEvent] = []
        async with store.watch(prefix) as events:
            await store.put(prefix + "x", b"1")
            await store.put("/elsewhere/" + prefix, b"not watched")
            await store.delete(prefix + "x")
            async with asyncio.timeout(10):
                async for event in events:
                    seen.append(event)
                    if len(seen) == 2:
                        break
        return seen
    seen = run(etcd, body)
    assert [(e.change, e.kv.key, e.kv.value) for e in seen] == [(Change.PUT, prefix + "x", b"1"),
                                                                (Change.DELETE, prefix + "x", b"")]


def test_a_watch_from_a_revision_replays_what_came_before(etcd: EtcdServer, prefix: str) -> None:
    async def body(store: EtcdGateway) -> WatchEvent:
        revision = await store.put(prefix + "early", b"before the watch")
        async with store.watch(prefix, start_revision=revision) as events, asyncio.timeout(10):
            return await anext(events)
    event = run(etcd, body)
    assert (event.change, event.kv.value) == (Change.PUT, b"before the watch")


def test_a_dead_endpoint_is_skipped_and_none_alive_is_unreachable(etcd: EtcdServer, prefix: str) -> None:
    dead = f"http://127.0.0.1:{free_ports(1)[0]}"

    async def body(store: EtcdGateway) -> None:
        await store.put(prefix + "k", b"v")
        async with store.watch(prefix):
            pass
    run(etcd, body, dead, etcd.url)

    async def nothing_answers(store: EtcdGateway) -> None:
        with pytest.raises(StoreUnreachable, match=f"answers on none of its endpoints: {dead}: "):
            await store.get(prefix + "k")
        with pytest.raises(StoreUnreachable):
            async with store.watch(prefix):
                pass
    run(etcd, nothing_answers, dead)


def test_a_refusal_is_a_store_error_with_the_reason(etcd: EtcdServer) -> None:
    async def body(store: EtcdGateway) -> None:
        with pytest.raises(StoreError, match=r"refused /v3/kv/put: etcdserver: requested lease not found") as raised:
            await store.put("/k", b"v", lease=12345)
        assert not isinstance(raised.value, StoreUnreachable)
    run(etcd, body)


def test_prefix_end_covers_exactly_the_prefix() -> None:
    import base64
    assert base64.b64decode(prefix_end("/a/")) == b"/a0"
    assert base64.b64decode(prefix_end("a\xff")) == b"a\xc3\xc0"  # the last byte of the UTF-8, plus one


@pytest.fixture
def etcd_with_auth() -> Iterator[EtcdServer]:
    """An etcd of its own with users on (root:rootpw)."""
    for server in running_etcd():
        async def enable_auth(endpoint: Endpoint) -> None:
            for path, body in (("user/add", {"name": "root", "password": "rootpw"}), ("role/add", {"name": "root"}),
                               ("user/grant", {"user": "root", "role": "root"}), ("enable", {})):
                await post(endpoint, f"/v3/auth/{path}", body, {})
        asyncio.run(enable_auth(Endpoint.parse(server.url)))
        yield server


def test_username_and_password_and_a_token_that_ends(etcd_with_auth: EtcdServer) -> None:
    async def body(store: EtcdGateway) -> None:
        await store.put("/k", b"v")
        old_token = store._token
        assert old_token is not None
        endpoint = Endpoint.parse(etcd_with_auth.url)  # auth off and on again: every token ends, as on expiry
        await post(endpoint, "/v3/auth/disable", {}, {"Authorization": old_token})
        await post(endpoint, "/v3/auth/enable", {}, {})
        with pytest.raises(HttpError, match="invalid auth token"):
            await post(endpoint, "/v3/kv/range", {"key": "L2s="}, {"Authorization": old_token})
        got = await store.get("/k")  # authenticates again, once
        assert got is not None and got.value == b"v" and store._token != old_token
    asyncio.run(_with(EtcdGateway([etcd_with_auth.url], username="root", password="rootpw"), body))

    async def wrong(store: EtcdGateway) -> None:
        with pytest.raises(StoreError, match="authentication failed, invalid user ID or password"):
            await store.get("/k")
    asyncio.run(_with(EtcdGateway([etcd_with_auth.url], username="root", password="wrong"), wrong))

    async def anonymous(store: EtcdGateway) -> None:
        with pytest.raises(StoreError, match="refused /v3/kv/range: etcdserver: user name is empty"):
            await store.get("/k")
    asyncio.run(_with(EtcdGateway([etcd_with_auth.url]), anonymous))


async def _with(store: EtcdGateway, body: Callable[[EtcdGateway], Awaitable[None]]) -> None:
    try:
        await body(store)
    finally:
        await store.close()


@pytest.fixture
def etcd_with_tls(tmp_path: pathlib.Path) -> Iterator[EtcdServer]:
    """An etcd on https that wants a client certificate signed by its CA."""
    yield from running_etcd(tls=certificates(str(tmp_path)))


def test_https_with_a_client_certificate_from_cluster_yaml(etcd_with_tls: EtcdServer, tmp_path: pathlib.Path) -> None:
    assert etcd_with_tls.tls is not None
    tls = {"ca": etcd_with_tls.tls["ca"], "cert": etcd_with_tls.tls["cert"], "key": etcd_with_tls.tls["key"]}
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump({
        "name": "t", "store": {"endpoints": [etcd_with_tls.url], "tls": tls}, "nodes": {"a": {"address": "a"}}}))
    store_config = read_cluster_config(str(tmp_path / "cluster.yaml")).store

    async def body(store: EtcdGateway) -> None:
        async with store.watch("/tls/") as events:
            await store.put("/tls/k", b"v")
            async with asyncio.timeout(10):
                event = await anext(events)
        assert (event.kv.key, event.kv.value) == ("/tls/k", b"v")
    asyncio.run(_with(EtcdGateway.from_config(store_config), body))

    async def without_certificate(store: EtcdGateway) -> None:
        with pytest.raises(StoreUnreachable, match=etcd_with_tls.url):
            await store.get("/tls/k")
    no_client_cert = ssl.create_default_context(cafile=tls["ca"])
    asyncio.run(_with(EtcdGateway([etcd_with_tls.url], no_client_cert), without_certificate))


def test_a_transaction_writes_all_or_nothing_on_revisions_and_existing_keys(etcd: EtcdServer, prefix: str) -> None:
    """What a plan's phase change is: plan unchanged AND every acknowledgement there -> next phase."""
    from synsup.supervisor.cluster.store import Exists, Unchanged

    async def body(store: EtcdGateway) -> None:
        plan = prefix + "plan"
        assert await store.transact([Unchanged(plan, 0)], [(plan, b"phase 0")]), "absent is revision 0"
        seen = await store.get(plan)
        assert seen is not None
        wanted = [Unchanged(plan, seen.mod_revision), Exists(prefix + "ack/a"), Exists(prefix + "ack/b")]
        await store.put(prefix + "ack/a", b"")
        assert not await store.transact(wanted, [(plan, b"phase 1"), (prefix + "log", b"1")]), "b has not acked"
        assert (await store.get(plan) or seen).value == b"phase 0" and await store.get(prefix + "log") is None
        await store.put(prefix + "ack/b", b"")
        assert await store.transact(wanted, [(plan, b"phase 1"), (prefix + "log", b"1")])
        assert (await store.get(plan) or seen).value == b"phase 1" and await store.get(prefix + "log") is not None
        assert not await store.transact(wanted, [(plan, b"phase 2")]), "a stale revision"
    run(etcd, body)
