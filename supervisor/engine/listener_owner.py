"""Whether the listener a probe reached belongs to the unit: a port another process holds
answers /health as well as ours would."""

from __future__ import annotations

import psutil

from ..spec import HttpProbe, Probe


def tree_listeners(pid: int) -> set[int | str]:
    """The TCP ports and UNIX socket paths that `pid` and its descendants listen on."""
    root = psutil.Process(pid)
    found: set[int | str] = set()
    for proc in [root, *root.children(recursive=True)]:
        try:
            connections = proc.net_connections(kind="all")
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        for conn in connections:
            if isinstance(conn.laddr, str):
                if conn.laddr:
                    found.add(conn.laddr)
            elif conn.status == psutil.CONN_LISTEN and conn.laddr:
                found.add(conn.laddr.port)
    return found


def foreign_listeners(probes: tuple[Probe, ...], pid: int) -> str | None:
    """Why some HTTP probe's listener is not the unit's (process `pid` and its descendants),
    or None when every one is."""
    try:
        owned = tree_listeners(pid)
    except psutil.Error as e:
        return f"cannot see the listeners of pid {pid}: {e}"
    for probe in probes:
        if isinstance(probe, HttpProbe) and (probe.path or probe.port) not in owned:
            return f"{probe.describe()} is answered by a process outside this unit (not pid {pid} or its children)"
    return None
