"""The metrics address (`--metrics`): a tiny HTTP/1.1 server in the daemon's event loop serving
GET /metrics (Prometheus text format) and GET /targets (http_sd), one request per connection."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from ..errors import SynsupError

REQUEST_TIMEOUT = 10.0  # seconds a connection may take from accept to its answer sent
MAX_CONNECTIONS = 64  # at once; more are answered 503 and closed
MAX_HEAD = 16 * 1024
Route = Callable[[], tuple[bytes, str]]  # -> (body, content type)

log = structlog.get_logger()



class MetricsAddressError(SynsupError):
    """A `--metrics` value that cannot be served; the message names the flag and the fix."""


@dataclass(frozen=True)
class MetricsAddress:
    host: str | None = None
    port: int | None = None
    path: str | None = None

    def describe(self) -> str:
        return f"unix:{self.path}" if self.path else f"http://{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> MetricsAddress:
        """HOST:PORT, [V6]:PORT, :PORT (loopback) or a UNIX socket path (with a /)."""
        if "/" in text:
            return cls(path=os.path.abspath(text))
        host, sep, port = text.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise MetricsAddressError(f"--metrics {text!r}: give HOST:PORT (e.g. 127.0.0.1:9400) or a UNIX "
                                      "socket path (e.g. /run/synsup/metrics.sock)")
        return cls(host=host, port=int(port))


def _kind(mode: int) -> str:
    return "a directory" if stat.S_ISDIR(mode) else "a symlink" if stat.S_ISLNK(mode) else \
        "a regular file" if stat.S_ISREG(mode) else "not a file synsup made"


def claim_socket_path(path: str) -> None:
    """Make room for our socket at `path`: nothing there, or a stale socket of ours (our uid,
    nobody answering), which is removed. Anything else is refused, never deleted."""
    fix = "remove it or give --metrics another path"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise MetricsAddressError(f"--metrics unix:{path}: {path} is not a socket ({_kind(st.st_mode)}); {fix}")
    if st.st_uid != os.getuid():
        raise MetricsAddressError(f"--metrics unix:{path}: the socket belongs to uid {st.st_uid}, not us; {fix}")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # stale: its listener is gone
            return
    raise MetricsAddressError(f"--metrics unix:{path}: the socket is in use (another synsup's metrics?); "
                              "stop that one or give --metrics another path")


def _response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n")
    return head.encode() + body


class MetricsServer:
    def __init__(self, address: MetricsAddress, routes: dict[str, Route], max_connections: int = MAX_CONNECTIONS,
                 request_timeout: float = REQUEST_TIMEOUT) -> None:
        self.address, self.routes = address, routes
        self.max_connections, self.request_timeout = max_connections, request_timeout
        self.connections = 0
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        try:
            if self.address.path:
                claim_socket_path(self.address.path)
                self._server = await asyncio.start_unix_server(self._serve, self.address.path, limit=MAX_HEAD)
            else:
                self._server = await asyncio.start_server(self._serve, self.address.host, self.address.port,
                                                          limit=MAX_HEAD, reuse_address=True)
        except OSError as e:
            raise MetricsAddressError(f"--metrics {self.address.describe()}: cannot listen: {e.strerror or e}; "
                                      "choose a free port or a writable path") from None
        log.info("metrics.listening", address=self.address.describe())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            async with asyncio.timeout(self.request_timeout):  # idle or slow readers are dropped
                head = await reader.readuntil(b"\r\n\r\n")
                busy = self.connections > self.max_connections
                writer.write(_response("503 Service Unavailable", b"too many connections; try again\n") if busy
                             else self._answer(head))
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            self.connections -= 1
            writer.close()

    def _answer(self, head: bytes) -> bytes:
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(parts) != 3 or parts[0] not in ("GET", "HEAD"):
            return _response("405 Method Not Allowed", b"only GET\n")
        route = self.routes.get(parts[1].split("?", 1)[0])
        if route is None:
            return _response("404 Not Found", f"try {' or '.join(self.routes)}\n".encode())
        try:
            body, content_type = route()
        except Exception as e:  # a bug in one scrape never takes the daemon down
            log.exception("metrics.scrape_failed")
            return _response("500 Internal Server Error", f"{type(e).__name__}: {e}\n".encode())
        return _response("200 OK", b"" if parts[0] == "HEAD" else body, content_type)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self.address.path:
            try:
                os.unlink(self.address.path)
            except FileNotFoundError:
                pass
