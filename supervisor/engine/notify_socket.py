"""systemd's notify protocol, heard: one socket for every unit, on which a unit's process says
READY=1. As systemd does, the kernel says who sent each message (SO_PASSCRED): a message goes
to the unit whose process sent it, or whose process is an ancestor of the sender (a wrapper
that did not exec). Anything else is dropped: a unit cannot speak for another, and a process
that is no unit's cannot speak at all. One socket, not one per unit: 500 units made 500 socket
files on the way to their first spawn."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import struct
from collections.abc import Callable

import structlog

CREDENTIALS = struct.Struct("iII")  # struct ucred: pid, uid, gid
ANCESTORS_LOOKED_AT = 8  # parents followed from a sender that is no unit's process
OLD_SOCKETS = re.compile(r"\d+\.sock")  # one socket per unit, as an earlier synsup made them

log = structlog.get_logger()


def parse(datagram: bytes) -> dict[str, str]:
    fields = {}
    for line in datagram.decode(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key] = value
    return fields


def parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2:].split()  # the name may hold spaces and parentheses
    return int(fields[1]) if len(fields) > 1 else None


class NotifySocket:
    """The datagram socket at `path` every unit's process sends its notify messages to; each
    message goes to the handler of the unit pid it came from (`listen`)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._handlers: dict[int, Callable[[dict[str, str]], None]] = {}
        directory = os.path.dirname(path)
        for name in os.listdir(directory):
            if OLD_SOCKETS.fullmatch(name):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(directory, name))
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self._sock.bind(path)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._sock.fileno(), self._readable)

    def listen(self, pid: int, on_message: Callable[[dict[str, str]], None]) -> None:
        """The messages of `pid` (and its descendants) go to `on_message` until `forget(pid)`."""
        self._handlers[pid] = on_message

    def forget(self, pid: int) -> None:
        self._handlers.pop(pid, None)

    def _readable(self) -> None:
        while True:
            try:
                data, ancillary, _, _ = self._sock.recvmsg(4096, socket.CMSG_SPACE(CREDENTIALS.size))
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            sender = next((CREDENTIALS.unpack_from(payload)[0] for level, kind, payload in ancillary
                           if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS
                           and len(payload) >= CREDENTIALS.size), None)
            handler = self._handler_of(sender)
            if handler is None:
                log.debug("notify.unknown_sender", pid=sender)
                continue
            handler(parse(data))

    def _handler_of(self, pid: int | None) -> Callable[[dict[str, str]], None] | None:
        for _ in range(ANCESTORS_LOOKED_AT):
            if pid is None or pid <= 1:
                return None
            handler = self._handlers.get(pid)
            if handler is not None:
                return handler
            pid = parent_of(pid)
        return None

    def close(self) -> None:
        if self._sock.fileno() >= 0:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
