"""Health probes: one request, the first reply lines, over a bare non-blocking socket.

Cheap enough to run every 10 s on hundreds of units: no streams, no HTTP client, no DNS
for numeric hosts (asyncio resolves IP literals without a thread)."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from typing import Awaitable

from .spec import HttpProbe, Probe, RedisProbe


class ProbeFailed(Exception):
    pass


_TLS: ssl.SSLContext | None = None


def _tls() -> ssl.SSLContext:
    global _TLS
    if _TLS is None:
        _TLS = ssl.create_default_context()
        _TLS.check_hostname = False
        _TLS.verify_mode = ssl.CERT_NONE  # a loopback health check of our own child
    return _TLS


async def _plain(probe: Probe, request: bytes, lines: int) -> bytes:
    """A bare non-blocking socket: about 60 % of the CPU of asyncio's transports per probe."""
    loop = asyncio.get_running_loop()
    if probe.path:
        family, address = socket.AF_UNIX, probe.path
    else:
        family = socket.AF_INET6 if ":" in (probe.host or "") else socket.AF_INET
        address = (probe.host, probe.port)
    sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    try:
        await loop.sock_connect(sock, address)
        await loop.sock_sendall(sock, request)
        data = b""
        while data.count(b"\n") < lines:
            await _readable(loop, sock.fileno())
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data
    finally:
        sock.close()


async def _readable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    """Wait for the reply before reading (saves the EAGAIN read that sock_recv makes first)."""
    ready = loop.create_future()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def _over_tls(probe: Probe, request: bytes, lines: int) -> bytes:
    if probe.path:
        reader, writer = await asyncio.open_unix_connection(probe.path, ssl=_tls(), server_hostname="localhost")
    else:
        reader, writer = await asyncio.open_connection(probe.host, probe.port, ssl=_tls())
    try:
        writer.write(request)
        return b"".join([await reader.readline() for _ in range(lines)])
    finally:
        writer.close()


async def exchange(probe: Probe, request: bytes, lines: int) -> list[bytes]:
    """Send `request`; the first `lines` reply lines (fewer if the peer closes early)."""
    data = await (_over_tls if probe.tls else _plain)(probe, request, lines)
    return (data.split(b"\n") + [b""] * lines)[:lines]


def _command(*words: str) -> bytes:
    out = [f"*{len(words)}\r\n"]
    for word in words:
        out.append(f"${len(word.encode())}\r\n{word}\r\n")
    return "".join(out).encode()


def _text(line: bytes) -> str:
    return line.decode(errors="replace").strip()


def _expect_200(probe: HttpProbe, status: bytes) -> None:
    parts = status.split()
    if len(parts) < 2 or parts[1] != b"200":
        raise ProbeFailed(f"{probe.describe()} answered {_text(status)!r}")


async def _http(probe: HttpProbe) -> None:
    request = f"GET {probe.url_path} HTTP/1.0\r\nHost: {probe.host or 'localhost'}\r\n\r\n".encode()
    (status,) = await exchange(probe, request, 1)
    _expect_200(probe, status)


async def _redis(probe: RedisProbe) -> None:
    auth = _command("AUTH", probe.password) if probe.password else b""
    replies = await exchange(probe, auth + _command("PING"), 2 if auth else 1)
    if auth and not replies[0].startswith(b"+OK"):
        raise ProbeFailed(f"{probe.describe()} refused AUTH: {_text(replies[0])}")
    if not replies[-1].startswith(b"+PONG"):
        raise ProbeFailed(f"{probe.describe()} answered PING with {_text(replies[-1])!r}")


async def check(probe: Probe, timeout: float) -> str | None:
    """None when healthy, else why not (a new connection each time)."""
    return await _verdict(probe, timeout, _http(probe) if isinstance(probe, HttpProbe) else _redis(probe))


async def _verdict(probe: Probe, timeout: float, work: Awaitable[None]) -> str | None:
    """Run a probe's work under its timeout: None when healthy, else one line saying why not."""
    try:
        async with asyncio.timeout(timeout):
            await work
    except ProbeFailed as e:
        return str(e)
    except TimeoutError:
        return f"{probe.describe()} did not answer within {timeout:g}s"
    except (OSError, ssl.SSLError, ValueError) as e:
        reason = os.strerror(e.errno) if isinstance(e, OSError) and e.errno else str(e)
        return f"{probe.describe()}: {reason}"
    return None


class _Stale(Exception):
    """A kept-alive connection the peer had closed: try again on a fresh one."""


async def _http_on(sock: socket.socket, probe: HttpProbe) -> tuple[bytes, bool]:
    """One HTTP/1.1 request on an open socket: (status line, whether to keep the socket)."""
    loop = asyncio.get_running_loop()
    request = f"GET {probe.url_path} HTTP/1.1\r\nHost: {probe.host or 'localhost'}\r\n\r\n".encode()
    await loop.sock_sendall(sock, request)
    data = b""
    while b"\r\n\r\n" not in data:
        await _readable(loop, sock.fileno())
        chunk = sock.recv(4096)
        if not chunk:
            raise _Stale() if not data else ProbeFailed(f"{probe.describe()} closed mid-reply")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(b":") for l in lines[1:])}
    length = headers.get(b"content-length", b"")
    keep = lines[0].startswith(b"HTTP/1.1") and headers.get(b"connection", b"").lower() != b"close" \
        and length.isdigit() and len(body) == int(length)
    return lines[0], keep


async def _open(probe: Probe) -> socket.socket:
    loop = asyncio.get_running_loop()
    family = socket.AF_UNIX if probe.path else (socket.AF_INET6 if ":" in (probe.host or "") else socket.AF_INET)
    sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    try:
        await loop.sock_connect(sock, probe.path or (probe.host, probe.port))
    except BaseException:
        sock.close()
        raise
    return sock


class Prober:
    """A unit's probes, keeping plain HTTP connections alive between checks (half the CPU of
    a new TCP connection each time). A kept connection that turns out closed is retried
    once on a fresh one; only a fresh connection's failure counts."""

    def __init__(self, probes: tuple[Probe, ...]) -> None:
        self.probes = probes
        self._kept: dict[Probe, socket.socket] = {}

    async def check_all(self, timeout: float) -> str | None:
        if len(self.probes) == 1:
            return await self._check(self.probes[0], timeout)
        results = await asyncio.gather(*(self._check(p, timeout) for p in self.probes))
        failures = [r for r in results if r]
        return "; ".join(failures) if failures else None

    async def _check(self, probe: Probe, timeout: float) -> str | None:
        if not isinstance(probe, HttpProbe) or probe.tls:
            return await check(probe, timeout)
        return await _verdict(probe, timeout, self._http(probe))

    async def _http(self, probe: HttpProbe) -> None:
        _expect_200(probe, await self._status(probe))

    async def _status(self, probe: HttpProbe) -> bytes:
        sock = self._kept.pop(probe, None)
        if sock is not None:
            try:
                return self._keep(probe, sock, *await _http_on(sock, probe))
            except (_Stale, OSError):
                sock.close()
            except BaseException:
                sock.close()
                raise
        sock = await _open(probe)
        try:
            return self._keep(probe, sock, *await _http_on(sock, probe))
        except _Stale:
            sock.close()
            raise ProbeFailed(f"{probe.describe()} closed the connection without answering") from None
        except BaseException:
            sock.close()
            raise

    def _keep(self, probe: HttpProbe, sock: socket.socket, status: bytes, keep: bool) -> bytes:
        if keep:
            self._kept[probe] = sock
        else:
            sock.close()
        return status

    def close(self) -> None:
        for sock in self._kept.values():
            sock.close()
        self._kept.clear()
