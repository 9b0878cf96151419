"""systemd's notify protocol, heard: a socket per unit on which its process says READY=1."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable


def parse(datagram: bytes) -> dict[str, str]:
    fields = {}
    for line in datagram.decode(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key] = value
    return fields


class NotifySocket:
    """A datagram socket a child sends its notify messages to; calls `on_message` with the fields."""

    # one per unit: no __dict__
    __slots__ = ("path", "_on_message", "_sock")

    def __init__(self, path: str, on_message: Callable[[dict[str, str]], None]) -> None:
        self.path = path
        self._on_message = on_message
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        if os.path.exists(path):
            os.unlink(path)
        self._sock.bind(path)
        asyncio.get_running_loop().add_reader(self._sock.fileno(), self._readable)

    def _readable(self) -> None:
        while True:
            try:
                data = self._sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self._on_message(parse(data))

    def close(self) -> None:
        if self._sock.fileno() >= 0:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
