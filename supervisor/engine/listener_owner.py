"""Whether the listener a probe reached belongs to the unit: a port another process holds
answers /health as well as ours would.

The machine's socket tables (/proc/net/tcp, tcp6, unix) are read once for all the units that
ask meanwhile (500 units becoming ready together: one read, not 500), in a worker thread, never
on the event loop; a unit's own sockets are the `socket:[inode]` links of its tree's fds."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from dataclasses import dataclass, field

from ..spec import HttpProbe, Probe
from .resources import process_tree

TCP_LISTEN = "0A"


@dataclass
class SocketTables:
    """Listening TCP sockets by port and bound UNIX sockets by path: their inodes."""

    tcp: dict[int, set[int]] = field(default_factory=dict)
    unix: dict[str, set[int]] = field(default_factory=dict)


def read_socket_tables() -> SocketTables:
    tables = SocketTables()
    for name in ("tcp", "tcp6"):
        for fields in _rows(f"/proc/net/{name}", None):
            if len(fields) > 9 and fields[3] == TCP_LISTEN:
                port = int(fields[1].rsplit(":", 1)[1], 16)
                tables.tcp.setdefault(port, set()).add(int(fields[9]))
    for fields in _rows("/proc/net/unix", 7):  # Num RefCount Protocol Flags Type St Inode Path
        if len(fields) == 8:
            tables.unix.setdefault(fields[7].rstrip("\n"), set()).add(int(fields[6]))
    return tables


def _rows(path: str, max_split: int | None) -> list[list[str]]:
    try:
        with open(path) as f:
            return [line.split(None, max_split) if max_split else line.split() for line in f.readlines()[1:]]
    except OSError:
        return []


class _Rounds:
    """Tables read at most once for every request made before the read began."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._read_at = float("-inf")
        self._tables = SocketTables()

    def since(self, asked: float) -> SocketTables:
        with self._lock:
            if self._read_at < asked:  # the listener may be newer than the last read
                self._read_at = time.monotonic()
                self._tables = read_socket_tables()
            return self._tables


ROUNDS = _Rounds()


def tree_sockets(pid: int) -> set[int]:
    """The socket inodes open in `pid` and its descendants."""
    inodes: set[int] = set()
    for member in process_tree(pid):
        try:
            names = os.listdir(f"/proc/{member}/fd")
        except FileNotFoundError:
            continue
        for name in names:
            try:
                target = os.readlink(f"/proc/{member}/fd/{name}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    return inodes


def foreign(probes: tuple[Probe, ...], pid: int, tables: SocketTables) -> str | None:
    """Why some HTTP probe's listener is not the unit's (process `pid` and its descendants),
    or None when every one is."""
    try:
        owned = tree_sockets(pid)
    except PermissionError as e:
        return f"cannot see the listeners of pid {pid}: {e}"
    for probe in probes:
        if not isinstance(probe, HttpProbe):
            continue
        inodes = tables.unix.get(probe.path, set()) if probe.path else tables.tcp.get(probe.port or 0, set())
        if not inodes & owned:
            return f"{probe.describe()} is answered by a process outside this unit (not pid {pid} or its children)"
    return None


async def foreign_listeners(probes: tuple[Probe, ...], pid: int) -> str | None:
    """`foreign`, off the event loop, on tables read after this call."""
    if not any(isinstance(p, HttpProbe) for p in probes):
        return None
    asked = time.monotonic()
    return await asyncio.to_thread(lambda: foreign(probes, pid, ROUNDS.since(asked)))
