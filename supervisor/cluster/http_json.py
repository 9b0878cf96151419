"""JSON over HTTP/1.1 POST on asyncio streams, what etcd's gRPC gateway needs and no more: one
request per connection (`Connection: close`), a response with Content-Length, chunked or read to
the end, and a streamed response (a watch) as a series of JSON objects as they arrive."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..tls import asyncio_tls

MAX_HEAD = 64 * 1024


class HttpError(Exception):
    """The server answered with a status >= 400 (its message, from the JSON body when there is one)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message = status, message


class BadResponse(Exception):
    """Not HTTP, or not JSON: something else answers at this address."""


@dataclass(frozen=True)
class Endpoint:
    url: str
    host: str
    port: int
    tls: ssl.SSLContext | None = None

    @classmethod
    def parse(cls, url: str, tls: ssl.SSLContext | None = None) -> Endpoint:
        parts = urlsplit(url)
        assert parts.hostname and parts.port, url  # cluster_config checked the URL
        return cls(url, parts.hostname, parts.port, tls if parts.scheme == "https" else None)


async def post(endpoint: Endpoint, path: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    """The JSON object a POST answers with; HttpError for a status >= 400."""
    reader, writer = await _send(endpoint, path, body, headers)
    try:
        status, head = await _read_head(reader)
        data = b"".join([chunk async for chunk in _body(reader, head)])
    finally:
        await _close(writer)
    answer = _decode(data)
    if status >= 400:
        raise HttpError(status, str(answer.get("message") or answer.get("error") or answer))
    return answer


@contextlib.asynccontextmanager
async def stream(endpoint: Endpoint, path: str, body: dict[str, Any],
                 headers: dict[str, str]) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
    """A streamed response: the JSON objects it sends, as they come; the connection closes on exit."""
    reader, writer = await _send(endpoint, path, body, headers)
    try:
        status, head = await _read_head(reader)
        if status >= 400:
            data = b"".join([chunk async for chunk in _body(reader, head)])
            raise HttpError(status, str(_decode(data).get("message") or data[:200]))
        yield _objects(_body(reader, head))
    finally:
        await _close(writer)


async def _send(endpoint: Endpoint, path: str, body: dict[str, Any],
                headers: dict[str, str]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if endpoint.tls is not None:
        asyncio_tls()  # asyncio was imported without ssl (tls.py)
    reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port, ssl=endpoint.tls,
                                                   server_hostname=endpoint.host if endpoint.tls else None)
    data = json.dumps(body).encode()
    lines = [f"POST {path} HTTP/1.1", f"Host: {endpoint.host}:{endpoint.port}", "Content-Type: application/json",
             f"Content-Length: {len(data)}", "Connection: close", *(f"{k}: {v}" for k, v in headers.items())]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
    await writer.drain()
    return reader, writer


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
        raise BadResponse("no HTTP response head") from e
    status_line, *header_lines = raw[:MAX_HEAD].decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise BadResponse(f"not an HTTP response: {status_line[:80]!r}")
    head = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        head[name.strip().lower()] = value.strip()
    return int(parts[1]), head


async def _body(reader: asyncio.StreamReader, head: dict[str, str]) -> AsyncIterator[bytes]:
    if head.get("transfer-encoding", "").lower() == "chunked":
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0].strip() or b"0", 16):
            yield await reader.readexactly(size)
            await reader.readexactly(2)
        return
    if "content-length" in head:
        yield await reader.readexactly(int(head["content-length"]))
        return
    yield await reader.read()


async def _objects(chunks: AsyncIterator[bytes]) -> AsyncIterator[dict[str, Any]]:
    """Successive JSON objects across chunk boundaries (the gateway writes one per message)."""
    decoder, text, buffer = json.JSONDecoder(), codecs.getincrementaldecoder("utf-8")(), ""
    async for chunk in chunks:
        buffer += text.decode(chunk)
        while buffer.strip():
            start = len(buffer) - len(buffer.lstrip())
            try:
                value, end = decoder.raw_decode(buffer, start)
            except json.JSONDecodeError:
                break  # the rest of this object is in the next chunk
            buffer = buffer[end:]
            yield value


def _decode(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data or b"{}")
    except ValueError as e:
        raise BadResponse(f"not JSON: {data[:80]!r}") from e
    if not isinstance(value, dict):
        raise BadResponse(f"not a JSON object: {data[:80]!r}")
    return value


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()
