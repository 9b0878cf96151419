"""A probe's connection to its unit: a bare non-blocking socket watched by the loop once per
connection (kept alive between checks), or asyncio streams when the probe speaks TLS."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..spec import HttpProbe, RedisProbe
from ..tls import asyncio_tls

if TYPE_CHECKING:
    import ssl

_TLS: ssl.SSLContext | None = None


class ProbeFailed(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status that failed it, if one did


def reply_text(line: bytes) -> str:
    """A reply's line as the admin reads it in a probe's failure."""
    return line.decode(errors="replace").strip()


def _tls() -> ssl.SSLContext:
    """The context of TLS probes, ssl imported by the first (tls.py: not before)."""
    global _TLS
    if _TLS is None:
        ssl = asyncio_tls()
        _TLS = ssl.create_default_context()
        _TLS.check_hostname = False
        _TLS.verify_mode = ssl.CERT_NONE  # a loopback health check of our own child
    return _TLS


class ProbeConnection:
    """One socket to a probe's address: a bare non-blocking socket (about 60 % of the CPU of
    asyncio's transports per probe), or asyncio streams when the probe speaks TLS."""

    def __init__(self, sock: socket.socket | None = None,
                 streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None) -> None:
        self.sock, self.streams = sock, streams
        self._reply: asyncio.Future[None] | None = None  # a check waiting for the peer's bytes
        self._watched = False  # the socket stays in the loop's epoll set while the connection is kept
        self._on_bytes: Callable[[bytes], None] | None = None  # a settled check's reader (expect)

    @classmethod
    async def open(cls, probe: HttpProbe | RedisProbe) -> ProbeConnection:
        if probe.tls:
            if probe.path:
                streams = await asyncio.open_unix_connection(probe.path, ssl=_tls(), server_hostname="localhost")
            else:
                streams = await asyncio.open_connection(probe.host, probe.port, ssl=_tls())
            return cls(streams=streams)
        loop = asyncio.get_running_loop()
        family = socket.AF_UNIX if probe.path else (socket.AF_INET6 if ":" in (probe.host or "") else socket.AF_INET)
        sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        try:
            await loop.sock_connect(sock, probe.path or (probe.host, probe.port))
        except BaseException:
            sock.close()
            raise
        return cls(sock=sock)

    async def send(self, data: bytes) -> None:
        if self.streams is not None:
            self.streams[1].write(data)
            await self.streams[1].drain()
        else:
            assert self.sock is not None
            await asyncio.get_running_loop().sock_sendall(self.sock, data)

    async def recv(self) -> bytes:
        """The next bytes the peer sends; b"" when it closed."""
        if self.streams is not None:
            return await self.streams[0].read(4096)
        assert self.sock is not None
        while True:
            await self._readable()
            try:
                return self.sock.recv(4096)
            except BlockingIOError:
                pass  # woken by the readiness of the reply read before (one epoll round behind)

    async def _readable(self) -> None:
        """Wait for the reply before reading (saves the EAGAIN read that sock_recv makes first).
        The socket is added to the loop once per connection, not once per check: two epoll_ctl
        calls and a KeyError inside asyncio's add_reader were a fifth of a settled probe's CPU."""
        assert self.sock is not None
        loop = asyncio.get_running_loop()
        if not self._watched:
            loop.add_reader(self.sock.fileno(), self._on_readable)
            self._watched = True
        self._reply = loop.create_future()
        try:
            await self._reply
        finally:
            self._reply = None

    def expect(self, on_bytes: Callable[[bytes], None] | None) -> None:
        """Hand each read of the peer's bytes (b"" when it closed) to `on_bytes`, from the loop's
        readiness callback: no coroutine, no future (Prober.settled_check). None: stop."""
        self._on_bytes = on_bytes
        if on_bytes is not None and not self._watched:
            assert self.sock is not None
            asyncio.get_running_loop().add_reader(self.sock.fileno(), self._on_readable)
            self._watched = True

    def _on_readable(self) -> None:
        if self._on_bytes is not None:
            assert self.sock is not None
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            self._on_bytes(data)
            return
        if self._reply is not None:
            if not self._reply.done():
                self._reply.set_result(None)
            return
        assert self.sock is not None
        try:  # between checks: a wake-up of the reply just read, or the peer closed the connection
            self.sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return
        except OSError:
            pass
        self._unwatch()  # closed (or talking unasked): the next check finds it so and opens another

    def _unwatch(self) -> None:
        if self._watched and self.sock is not None:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self._watched = False

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
        elif self.sock is not None:
            self._on_bytes = None
            self._unwatch()
            self.sock.close()

    def to_this_host(self) -> bool:
        """Whether the peer is this machine: a UNIX socket, or the same address at both ends."""
        if self.streams is not None:
            peer, own = self.streams[1].get_extra_info("peername"), self.streams[1].get_extra_info("sockname")
        else:
            assert self.sock is not None
            peer, own = self.sock.getpeername(), self.sock.getsockname()
        return not isinstance(peer, tuple) or peer[0] == own[0]
