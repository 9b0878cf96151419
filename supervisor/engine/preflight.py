"""What is checked just before a unit's process is spawned: that its log file may be written
and that every address it will listen on is free. A unit that fails a check is not spawned:
it fails at once with the reason ("port 6379 is in use by pid 812 (redis-server)")."""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from dataclasses import dataclass
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


CLIENT_PORT_RETRY = 2.0  # seconds: a client connection's local end is let go soon


@dataclass(frozen=True)
class Refusal:
    """Why a unit is not spawned now; `retry_after` seconds when the cause passes by itself."""

    reason: str
    retry_after: float | None = None


def _connection(kind: str, match: Callable[[Any], bool], owned: bool = True) -> Any | None:
    try:
        return next((c for c in psutil.net_connections(kind=kind) if (c.pid or not owned) and match(c)), None)
    except (psutil.Error, OSError):
        return None


def _owner(kind: str, match: Callable[[Any], bool]) -> str:
    return _process_of(_connection(kind, match))


def _process_of(conn: Any | None) -> str:
    """"pid 812 (redis-server)" for a connection, or "another process" (one we may not see, as
    another user's process is to a non-root synsup)."""
    if conn is not None:
        try:
            return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
        except psutil.Error:
            pass
    return "another process"


def outgoing_ports() -> tuple[int, int]:
    """The kernel's range for the local end of outgoing connections (net.ipv4.ip_local_port_range)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(n) for n in f.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def outgoing_port_range() -> str:
    low, high = outgoing_ports()
    return f"{low}-{high}"


def tcp_listening(port: int) -> bool:
    """Whether some socket of this network namespace listens on TCP `port` (any address),
    from /proc/net/tcp and tcp6 (state 0A), without a connection; True when unreadable."""
    suffix = f":{port:04X}"
    try:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as f:
                if any(f"{suffix} " in line and line.split()[3] == "0A" for line in f):
                    return True
    except (OSError, IndexError):
        return True
    return False


def not_listening_yet(port: int) -> str | None:
    """Why a probe must not connect to `port` yet: in the kernel's outgoing range with nothing
    listening, a connect can connect to itself (TCP simultaneous open) and hold the port the
    unit is about to bind."""
    low, high = outgoing_ports()
    if low <= port <= high and not tcp_listening(port):
        return f"nothing listens on port {port} yet"
    return None


def _tcp_refusal(host: str, port: int) -> Refusal | None:
    if not _tcp_taken(host, port):
        return None
    listening = _connection("inet", lambda c: c.status == psutil.CONN_LISTEN and bool(c.laddr) and c.laddr.port == port)
    client = None if listening else _connection(
        "inet", lambda c: bool(c.laddr) and c.laddr.port == port and bool(c.raddr), owned=False)
    if client is None:
        return Refusal(f"port {port} is in use by {_process_of(listening)}")
    held = ("by a closed client connection in TIME_WAIT" if client.pid is None
            else f"by an outgoing connection of {_process_of(client)}")
    return Refusal(f"port {port} is held {held} to {client.raddr.ip}:{client.raddr.port} (the local end of a "
                   f"client connection; the kernel picks those from net.ipv4.ip_local_port_range, "
                   f"{outgoing_port_range()} here); tried again in {CLIENT_PORT_RETRY:g}s; move the port out of "
                   "that range or list it in net.ipv4.ip_local_reserved_ports", CLIENT_PORT_RETRY)


def address_refusal(listen: str) -> Refusal | None:
    """Why `listen` cannot be bound by the unit, or None when it is free."""
    where = split_address(listen)
    if isinstance(where, str):
        if not _unix_taken(where):
            return None
        return Refusal(f"socket {where} is in use by {_owner('unix', lambda c: c.laddr == where)}")
    return _tcp_refusal(*where)


def address_in_use(listen: str) -> str | None:
    """Why `listen` cannot be bound by the unit, or None when it is free."""
    refusal = address_refusal(listen)
    return refusal.reason if refusal is not None else None


def addresses_in_use(specs: list[UnitSpec]) -> list[str]:
    """"UNIT: port N is in use by ..." for every address a unit synsup would start listens on
    that is taken now (before a start: the deployment, or part of it, runs already)."""
    return [f"{spec.name}: {taken}" for spec in specs if spec.argv is not None
            for listen in spec.listens if (taken := address_in_use(listen)) is not None]


def preflight(spec: UnitSpec, output: UnitOutput) -> Refusal | None:
    """Why the unit must not be spawned now, or None."""
    refused = output.check()
    if refused is not None:
        return Refusal(refused)
    for listen in spec.listens:
        taken = address_refusal(listen)
        if taken is not None:
            return taken
    return None
