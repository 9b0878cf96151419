"""The control socket: one JSON request and JSON replies per line, own uid and root only.

The server reads the whole request before it answers (a refusal included), so a client
always gets its one-line answer instead of a broken pipe; it admits a bounded number of
connections and drops a connection that sends no request in time."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import structlog

Send = Callable[[dict[str, Any]], Awaitable[None]]
Handler = Callable[[dict[str, Any], Send], Awaitable[None]]

MAX_CONNECTIONS = 256
REQUEST_TIMEOUT = 30.0  # seconds a client may take to send its request line
MAX_REQUEST = 64 * 1024

log = structlog.get_logger()


class NotRunning(Exception):
    pass


class ControlError(Exception):
    pass


class ControlTimeout(ControlError):
    pass


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def allowed(uid: int) -> bool:
    return uid in (os.getuid(), 0)


class ControlServer:
    def __init__(self, path: str, handler: Handler, max_connections: int = MAX_CONNECTIONS,
                 request_timeout: float = REQUEST_TIMEOUT) -> None:
        self.path = path
        self.handler = handler
        self.max_connections, self.request_timeout = max_connections, request_timeout
        self.connections = 0
        self._server: asyncio.Server | None = None

    @property
    def fileno(self) -> int | None:
        """The listening socket's fd (passed across a re-exec)."""
        sockets = self._server.sockets if self._server is not None else ()
        return sockets[0].fileno() if sockets else None

    async def start(self, inherited_fd: int | None = None) -> None:
        """Listen at the path; or, after a re-exec, on the listening socket the old image passed."""
        if inherited_fd is not None:
            sock = socket.socket(fileno=inherited_fd)
            os.set_inheritable(inherited_fd, False)
            self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=MAX_REQUEST)
            return
        if os.path.lexists(self.path):
            os.unlink(self.path)
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, self.path, limit=MAX_REQUEST)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def send(reply: dict[str, Any]) -> None:
            writer.write((json.dumps(reply) + "\n").encode())
            await writer.drain()

        self.connections += 1
        try:
            if self.connections > self.max_connections:
                writer.write(b'{"ok": false, "error": "synsup is busy: too many control connections; try again"}\n')
                return
            request = await self._read_request(reader)
            uid = peer_uid(writer.get_extra_info("socket"))
            if not allowed(uid):
                await send({"ok": False, "error": f"uid {uid} may not control this synsup daemon "
                            f"(only uid {os.getuid()} and root); run as that user"})
            elif isinstance(request, str):
                await send({"ok": False, "error": request})
            else:
                await self._handle(request, send)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.connections -= 1
            writer.close()

    async def _read_request(self, reader: asyncio.StreamReader) -> dict[str, Any] | str:
        """The request, or why there is none (as the error to answer)."""
        try:
            async with asyncio.timeout(self.request_timeout):
                line = await reader.readline()
        except TimeoutError:
            return f"no request within {self.request_timeout:g}s"
        except (ValueError, asyncio.LimitOverrunError):
            return f"the request is longer than {MAX_REQUEST} bytes"
        try:
            request = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: nested too deep ([[[[...)
            return "the request is not JSON"
        return request if isinstance(request, dict) else "the request is not a JSON object"

    async def _handle(self, request: dict[str, Any], send: Send) -> None:
        try:
            await self.handler(request, send)
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as e:  # a bug in one request never takes the daemon down
            log.exception("control.request_failed", request=str(request)[:200])
            await send({"ok": False, "error": f"internal error: {type(e).__name__}: {e}"})

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class ControlClient:
    def __init__(self, path: str, timeout: float | None = 10.0) -> None:
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            self.sock.close()
            raise NotRunning(path) from None
        except PermissionError:
            self.sock.close()
            raise ControlError(f"{path}: permission denied; run as the daemon's user or root") from None
        except OSError as e:
            self.sock.close()
            raise ControlError(f"{path}: cannot connect: {e.strerror or e}") from None
        self._file = self.sock.makefile("rb")

    def send(self, request: dict[str, Any]) -> None:
        try:
            self.sock.sendall((json.dumps(request) + "\n").encode())
        except (BrokenPipeError, ConnectionResetError):
            # the daemon answered and closed before reading all of it: its answer says why
            for _ in self.replies():
                break
            raise ControlError("the daemon closed the connection without answering") from None
        except TimeoutError:
            raise ControlError(f"the daemon did not take the request within {self.timeout:g}s") from None

    def replies(self) -> Iterator[dict[str, Any]]:
        while True:
            try:
                line = self._file.readline()
            except TimeoutError:
                raise ControlTimeout(f"no answer from the daemon within {self.timeout:g}s") from None
            except ConnectionResetError:
                return
            if not line:
                return
            try:
                reply = json.loads(line)
            except ValueError:
                raise ControlError("the daemon's answer is not JSON") from None
            if not isinstance(reply, dict):
                raise ControlError("the daemon's answer is not a JSON object")
            if reply.get("ok") is False:
                raise ControlError(str(reply.get("error") or "the daemon refused the request"))
            yield reply

    def request(self, request: dict[str, Any]) -> dict[str, Any]:
        self.send(request)
        for reply in self.replies():
            return reply
        raise ControlError("the daemon closed the connection without answering")

    def close(self) -> None:
        self._file.close()
        self.sock.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
