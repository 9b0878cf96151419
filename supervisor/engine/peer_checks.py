"""Whether a ready unit's peers can reach it the way they are configured to (an address and a
secret of a shared config): a unit can answer its own health checks while every request its
peers send it fails. Checked once it is ready, then every `Timing.peer_interval` (30 s), off
the probes' timer; a failure marks the unit degraded with one line (what fails and the fix),
a success clears it. Nothing is restarted: the fix is in the config."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from ..spec import PeerCheck
from .clock import Clock
from .listener_owner import ROUNDS, SocketTables, tree_sockets
from .probe_connection import ProbeFailed
from .probes import failure_reason, http_request


class PeerChecks:
    """A unit's peer checks while one of its processes is ready; `degraded` says why one fails."""

    def __init__(self, clock: Clock, interval: float, timeout: float, on_change: Callable[[], None]) -> None:
        self.clock, self.interval, self.timeout = clock, interval, timeout
        self.on_change = on_change
        self.degraded: str | None = None

    async def run(self, checks: tuple[PeerCheck, ...], pid: int | None) -> None:
        """Until cancelled: check all (the checks of the spec this process runs with), say a
        change, wait."""
        while True:
            await self._set(await self.check_all(checks, pid))
            await self.clock.sleep(self.interval)

    async def _set(self, degraded: str | None) -> None:
        if degraded != self.degraded:
            self.degraded = degraded
            self.on_change()

    async def check_all(self, checks: tuple[PeerCheck, ...], pid: int | None) -> str | None:
        results = await asyncio.gather(*(self._check(c, pid) for c in checks))
        return "; ".join(r for r in results if r) or None

    async def _check(self, check: PeerCheck, pid: int | None) -> str | None:
        where = f"{check.route} ({check.probe.describe()})"
        kind, what = await self._attempt(check, pid)
        if kind is None:
            return None
        advice = check.advice_for(kind)
        return f"{where}: {what}" + (f"; {advice}" if advice else "")

    async def _attempt(self, check: PeerCheck, pid: int | None) -> tuple[str | None, str]:
        """(None, "") when it passed, else (the kind of failure, what happened)."""
        try:
            async with asyncio.timeout(self.timeout):
                local = await http_request(check.probe)
        except ProbeFailed as e:
            answered = str(e).removeprefix(check.probe.describe()).strip()
            return (str(e.status) if e.status else "", answered)
        except TimeoutError:
            return "unreachable", f"no answer within {self.timeout:g}s"
        except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
            return "unreachable", failure_reason(e)
        if local and pid is not None and (why := await _answered_by_another(check, pid)):
            return "foreign", why
        return None, ""


async def _answered_by_another(check: PeerCheck, pid: int) -> str | None:
    """Why the listener that answered is not the unit's (read off the event loop), or None."""
    asked = time.monotonic()
    if not await asyncio.to_thread(lambda: _outside(check, pid, ROUNDS.since(asked))):
        return None
    return f"answered by a process outside this unit (not pid {pid} or its children)"


def _outside(check: PeerCheck, pid: int, tables: SocketTables) -> bool:
    probe = check.probe
    try:
        owned = tree_sockets(pid)
    except PermissionError:
        return False  # cannot tell: not blamed
    inodes = tables.unix.get(probe.path, set()) if probe.path else tables.tcp.get(probe.port or 0, set())
    return not inodes & owned
