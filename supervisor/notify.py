"""systemd's notify protocol: a socket per unit to hear READY=1, and a client to tell systemd."""

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


class SystemdNotifier:
    """Sends messages to $NOTIFY_SOCKET (abstract `@` addresses too); silent when unset."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._sock: socket.socket | None = None
        if address:
            # non-blocking: a stalled systemd must never freeze the event loop
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)

    @classmethod
    def from_environment(cls) -> SystemdNotifier:
        return cls(os.environ.get("NOTIFY_SOCKET"))

    def send(self, **fields: object) -> None:
        if self._sock is None or self.address is None:
            return
        message = "\n".join(f"{k}={v}" for k, v in fields.items()).encode()
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            self._sock.sendto(message, target)
        except OSError:
            pass  # would block (advisory STATUS lines are dropped), or systemd is gone

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
