"""The control socket: one JSON request and JSON replies per line, own uid and root only."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
from typing import Any, Awaitable, Callable, Iterator

Send = Callable[[dict[str, Any]], Awaitable[None]]
Handler = Callable[[dict[str, Any], Send], Awaitable[None]]


class NotRunning(Exception):
    pass


class ControlError(Exception):
    pass


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def allowed(uid: int) -> bool:
    return uid in (os.getuid(), 0)


class ControlServer:
    def __init__(self, path: str, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, self.path)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def send(reply: dict[str, Any]) -> None:
            writer.write((json.dumps(reply) + "\n").encode())
            await writer.drain()

        try:
            uid = peer_uid(writer.get_extra_info("socket"))
            if not allowed(uid):
                await send({"ok": False, "error": f"uid {uid} may not control this synsup daemon "
                            f"(only uid {os.getuid()} and root); run as that user"})
                return
            line = await reader.readline()
            try:
                request = json.loads(line)
            except ValueError:
                await send({"ok": False, "error": "the request is not JSON"})
                return
            await self.handler(request if isinstance(request, dict) else {}, send)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class ControlClient:
    def __init__(self, path: str, timeout: float | None = 10.0) -> None:
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
        self._file = self.sock.makefile("rb")

    def send(self, request: dict[str, Any]) -> None:
        self.sock.sendall((json.dumps(request) + "\n").encode())

    def replies(self) -> Iterator[dict[str, Any]]:
        for line in self._file:
            reply = json.loads(line)
            if reply.get("ok") is False and "error" in reply:
                raise ControlError(reply["error"])
            yield reply

    def request(self, request: dict[str, Any]) -> dict[str, Any]:
        self.send(request)
        for reply in self.replies():
            return reply
        raise ControlError("the daemon closed the connection without answering")

    def close(self) -> None:
        self._file.close()
        self.sock.close()

    def __enter__(self) -> "ControlClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
