"""What is checked just before a unit's process is spawned: that its log file may be written
and that every address it will listen on is free. A unit that fails a check is not spawned:
it fails at once with the reason ("port 6379 is in use by pid 812 (redis-server)")."""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from typing import Any

import psutil

from ..spec import UnitSpec
from .unit_output import UnitOutput


def split_address(listen: str) -> tuple[str, int] | str:
    """"HOST:PORT" -> (host, port); "unix:PATH" -> PATH."""
    if listen.startswith("unix:"):
        return listen[len("unix:"):]
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def _tcp_taken(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no listener
        try:
            s.bind((host, port))
        except OSError as e:
            return e.errno == errno.EADDRINUSE
    return False


def _unix_taken(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
        except OSError:
            return False  # nothing there, or a stale socket file nobody answers on
    return True


def _owner(kind: str, match: Callable[[Any], bool]) -> str:
    """"pid 812 (redis-server)" for the listener `match` selects, or "another process" (one
    we may not see, as another user's process is to a non-root synsup)."""
    try:
        for conn in psutil.net_connections(kind=kind):
            if conn.pid and match(conn):
                return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
    except (psutil.Error, OSError):
        pass
    return "another process"


def address_in_use(listen: str) -> str | None:
    """Why `listen` cannot be bound by the unit, or None when it is free."""
    where = split_address(listen)
    if isinstance(where, str):
        if not _unix_taken(where):
            return None
        return f"socket {where} is in use by {_owner('unix', lambda c: c.laddr == where)}"
    host, port = where
    if not _tcp_taken(host, port):
        return None
    owner = _owner("inet", lambda c: c.status == psutil.CONN_LISTEN and bool(c.laddr) and c.laddr.port == port)
    return f"port {port} is in use by {owner}"


def addresses_in_use(specs: list[UnitSpec]) -> list[str]:
    """"UNIT: port N is in use by ..." for every address a unit synsup would start listens on
    that is taken now (before a start: the deployment, or part of it, runs already)."""
    return [f"{spec.name}: {taken}" for spec in specs if spec.argv is not None
            for listen in spec.listens if (taken := address_in_use(listen)) is not None]


def preflight(spec: UnitSpec, output: UnitOutput) -> str | None:
    """Why the unit must not be spawned now, or None."""
    refused = output.check()
    if refused is not None:
        return refused
    for listen in spec.listens:
        taken = address_in_use(listen)
        if taken is not None:
            return taken
    return None
