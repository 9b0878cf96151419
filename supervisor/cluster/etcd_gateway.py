"""etcd v3 through its JSON gRPC gateway (/v3/kv/range, /v3/kv/txn, /v3/lease/..., /v3/watch;
keys and values base64, 64-bit numbers as strings, zero fields left out), as Patroni's etcd3
module does: plain HTTP from the standard library's asyncio, no gRPC or protobuf to install or
to break. Endpoints are tried in turn, starting with the last one that answered."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ..cluster_config import StoreConfig
from .http_json import BadResponse, Endpoint, HttpError, post, stream
from .store import Change, Condition, Exists, KeyValue, Lease, StoreError, StoreUnreachable, WatchEvent

REQUEST_TIMEOUT = 5.0
UNANSWERED = (OSError, EOFError, TimeoutError, BadResponse)  # try another endpoint
INVALID_TOKEN = "etcdserver: invalid auth token"


def b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def prefix_end(prefix: str) -> str:
    """The range end that makes [prefix, end) every key starting with prefix (etcd's convention)."""
    raw = bytearray(prefix.encode())
    while raw and raw[-1] == 0xFF:
        raw.pop()
    if not raw:
        return b64(b"\0")
    raw[-1] += 1
    return b64(bytes(raw))


def key_value(kv: dict[str, Any]) -> KeyValue:
    return KeyValue(key=base64.b64decode(kv["key"]).decode(), value=base64.b64decode(kv.get("value", "")),
                    mod_revision=int(kv.get("mod_revision", 0)), create_revision=int(kv.get("create_revision", 0)),
                    lease=int(kv.get("lease", 0)))


def compare(condition: Condition) -> dict[str, Any]:
    """A transaction condition as etcd's Compare message."""
    if isinstance(condition, Exists):
        return {"key": b64(condition.key), "target": "CREATE", "result": "GREATER", "create_revision": "0"}
    return {"key": b64(condition.key), "target": "MOD", "result": "EQUAL", "mod_revision": str(condition.mod_revision)}


def tls_context(store: StoreConfig) -> ssl.SSLContext | None:
    if store.tls is None:
        return None
    context = ssl.create_default_context(cafile=store.tls.ca)
    if store.tls.cert and store.tls.key:
        context.load_cert_chain(store.tls.cert, store.tls.key)
    return context


class EtcdGateway:
    def __init__(self, endpoints: list[str], tls: ssl.SSLContext | None = None, username: str | None = None,
                 password: str | None = None, timeout: float = REQUEST_TIMEOUT) -> None:
        self.endpoints = [Endpoint.parse(url, tls) for url in endpoints]
        self.credentials = (username, password) if username and password is not None else None
        self.timeout = timeout
        self._token: str | None = None
        self._current = 0  # the endpoint that answered last

    @classmethod
    def from_config(cls, store: StoreConfig) -> EtcdGateway:
        return cls(list(store.endpoints), tls_context(store), store.username, store.password)

    async def get(self, key: str) -> KeyValue | None:
        answer = await self.call("/v3/kv/range", {"key": b64(key)})
        kvs = answer.get("kvs") or []
        return key_value(kvs[0]) if kvs else None

    async def get_prefix(self, prefix: str) -> list[KeyValue]:
        answer = await self.call("/v3/kv/range", {"key": b64(prefix), "range_end": prefix_end(prefix)})
        return [key_value(kv) for kv in answer.get("kvs") or []]

    async def put(self, key: str, value: bytes, lease: int = 0) -> int:
        answer = await self.call("/v3/kv/put", self._put(key, value, lease))
        return int(answer.get("header", {}).get("revision", 0))

    async def create(self, key: str, value: bytes, lease: int = 0) -> bool:
        return await self._txn({"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"},
                               self._put(key, value, lease))

    async def replace(self, key: str, value: bytes, mod_revision: int, lease: int = 0) -> bool:
        return await self._txn({"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(mod_revision)},
                               self._put(key, value, lease))

    async def transact(self, conditions: Sequence[Condition], puts: Sequence[tuple[str, bytes]]) -> bool:
        answer = await self.call("/v3/kv/txn", {"compare": [compare(c) for c in conditions],
                                                "success": [{"request_put": self._put(k, v, 0)} for k, v in puts]})
        return bool(answer.get("succeeded", False))

    async def delete(self, key: str) -> bool:
        answer = await self.call("/v3/kv/deleterange", {"key": b64(key)})
        return int(answer.get("deleted", 0)) > 0

    async def grant(self, ttl: int) -> Lease:
        answer = await self.call("/v3/lease/grant", {"TTL": str(ttl)})
        return Lease(int(answer["ID"]), int(answer.get("TTL", ttl)))

    async def keepalive(self, lease: int) -> int:
        answer = await self.call("/v3/lease/keepalive", {"ID": str(lease)})
        return int(answer.get("result", {}).get("TTL", 0))

    async def revoke(self, lease: int) -> None:
        try:
            await self.call("/v3/lease/revoke", {"ID": str(lease)})
        except StoreError as e:
            if "lease not found" not in str(e):  # already expired: what revoking wanted
                raise

    @contextlib.asynccontextmanager
    async def watch(self, prefix: str, start_revision: int = 0) -> AsyncIterator[AsyncIterator[WatchEvent]]:
        request = {"key": b64(prefix), "range_end": prefix_end(prefix)}
        if start_revision:
            request["start_revision"] = str(start_revision)
        async with contextlib.AsyncExitStack() as stack:
            yield _events(await self._open_watch(stack, {"create_request": request}))

    async def _open_watch(self, stack: contextlib.AsyncExitStack, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The watch's messages once etcd says it is in place, from the first endpoint that answers."""
        errors = []
        for endpoint in self._in_turn():
            try:
                async with contextlib.AsyncExitStack() as attempt, asyncio.timeout(self.timeout):
                    messages = await attempt.enter_async_context(stream(endpoint, "/v3/watch", body,
                                                                        await self._headers(endpoint)))
                    first = await anext(messages, None)
                    if first is None or not first.get("result", {}).get("created"):
                        raise BadResponse(f"no watch created: {first}")
                    stack.push_async_exit(attempt.pop_all())
                    return messages
            except UNANSWERED as e:
                errors.append(f"{endpoint.url}: {e or type(e).__name__}")
        raise StoreUnreachable(f"the store (etcd) answers on none of its endpoints: {'; '.join(errors)}")

    async def close(self) -> None:
        """Nothing stays open between calls (one connection per request)."""

    def _put(self, key: str, value: bytes, lease: int) -> dict[str, Any]:
        request = {"key": b64(key), "value": b64(value)}
        return request | ({"lease": str(lease)} if lease else {})

    async def _txn(self, compare: dict[str, Any], put: dict[str, Any]) -> bool:
        answer = await self.call("/v3/kv/txn", {"compare": [compare], "success": [{"request_put": put}]})
        return bool(answer.get("succeeded", False))

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One request, to the endpoint that answered last, else to each of the others in turn."""
        try:
            return await self._call(path, body)
        except StoreError as e:
            if INVALID_TOKEN not in str(e) or self.credentials is None:
                raise
            self._token = None  # expired (etcd's simple tokens last 5 minutes): authenticate again
            return await self._call(path, body)

    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        errors = []
        for endpoint in self._in_turn():
            try:
                async with asyncio.timeout(self.timeout):
                    answer = await self._request(endpoint, path, body)
            except UNANSWERED as e:
                errors.append(f"{endpoint.url}: {e or type(e).__name__}")
                continue
            self._current = self.endpoints.index(endpoint)
            return answer
        raise StoreUnreachable(f"the store (etcd) answers on none of its endpoints: {'; '.join(errors)}")

    def _in_turn(self) -> list[Endpoint]:
        return self.endpoints[self._current:] + self.endpoints[:self._current]

    async def _request(self, endpoint: Endpoint, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return await post(endpoint, path, body, await self._headers(endpoint))
        except HttpError as e:
            if e.status in (502, 503, 504):  # the member lost its quorum or leader: try another
                raise BadResponse(e.message) from e
            raise StoreError(f"etcd at {endpoint.url} refused {path}: {e.message}") from None

    async def _headers(self, endpoint: Endpoint | None = None) -> dict[str, str]:
        if self.credentials is None:
            return {}
        if self._token is None:
            name, password = self.credentials
            answer = await post(endpoint or self.endpoints[self._current], "/v3/auth/authenticate",
                                {"name": name, "password": password}, {})
            self._token = str(answer["token"])
        return {"Authorization": self._token}


async def _events(messages: AsyncIterator[dict[str, Any]]) -> AsyncIterator[WatchEvent]:
    """The watch's events; StoreUnreachable when it ends (connection lost, or ended by etcd)."""
    try:
        async for message in messages:
            result = message.get("result") or {}
            if "error" in message or result.get("canceled"):
                raise BadResponse(f"{message.get('error') or result.get('cancel_reason') or 'canceled'}")
            for event in result.get("events") or []:
                change = Change.DELETE if event.get("type") == "DELETE" else Change.PUT
                yield WatchEvent(change, key_value(event["kv"]))
    except UNANSWERED as e:
        raise StoreUnreachable(f"the store's watch ended: {e or type(e).__name__}") from None
    raise StoreUnreachable("the store's watch ended: the connection was closed")
