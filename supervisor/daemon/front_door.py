"""The front door (`start --proxy`): the reverse proxy kept in step with the units.

Each unit the proxy has a server for is `ready` there only while the unit is ready; a crash sets
it `maint` the moment the exit is seen; before every stop synsup makes (restart, reload, upgrade,
`synsup stop UNIT`) it is set `drain` and the stop waits until the server holds no request
(at most --drain-timeout). The proxy is told in order by one task; a proxy that is down or
refuses is a warning in the log and in status, never a reason to stop or delay a unit."""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from ..engine.unit_state import UnitState
from ..source import Loaded, ProxyLayout

if TYPE_CHECKING:
    from ..engine.unit import Unit
    from .daemon import Daemon

DRAIN_TIMEOUT = 10.0  # seconds a stop waits for the requests a drained server holds
DRAIN_POLL = 0.1  # seconds between two looks at a drained server's requests
RECHECK = 5.0  # seconds between two looks at the proxy (one that does not answer, or restarted)
# seconds a drain waits while an event persister is down (a persister change): the requests a
# server holds then wait on persistence, which resumes only after the stop (HAProxy retries them)
PAUSED_DRAIN = 1.0
TOLD_WAIT = 2.0  # seconds a reply waits for the proxy to be told what just changed


class ProxyError(Exception):
    """The proxy cannot be reached, is not what it should be, or refused: one line with the fix."""


class ProxyState(enum.Enum):
    READY = "ready"
    DRAIN = "drain"
    MAINT = "maint"
    ABSENT = "absent"  # the proxy has no server for the unit


class Proxy(Protocol):
    """One kind of proxy (proxy_doors.py: HAProxy's runtime API, an nginx routes file)."""

    kind: str
    target: str  # the admin socket or the routes file
    drains: bool  # can hold back new requests from one server

    async def check(self, layout: ProxyLayout | None) -> None: ...

    async def apply(self, layout: ProxyLayout) -> None: ...

    async def route(self, layout: ProxyLayout) -> None: ...

    async def restarted(self) -> bool: ...

    def serves(self, name: str) -> bool: ...

    async def set_state(self, name: str, state: ProxyState) -> None: ...

    async def in_flight(self, name: str) -> int: ...


class FrontDoor:
    def __init__(self, proxy: Proxy, drain_timeout: float = DRAIN_TIMEOUT,
                 layout_of: Callable[[Loaded], ProxyLayout] | None = None) -> None:
        self.proxy, self.drain_timeout, self.layout_of = proxy, drain_timeout, layout_of
        self.error: str | None = None  # why the proxy cannot be used now
        self.checked = False  # the first check is done (a drain waits for nothing before it)
        self.wanted: dict[str, ProxyState] = {}
        self.applied: dict[str, ProxyState] = {}
        self._draining: set[str] = set()
        self._pending: asyncio.Queue[str | None] = asyncio.Queue()  # unit names; "": lay out; None: close
        self._changed = asyncio.Event()  # something was applied (or failed)
        self._closed = asyncio.Event()
        self._daemon: Daemon | None = None
        self._laid_out: Loaded | None = None  # the config whose layout the proxy has
        self._persisters: frozenset[str] = frozenset()  # from the layout
        self.log = structlog.get_logger().bind(proxy=proxy.kind, target=proxy.target)

    def attach(self, daemon: Daemon) -> None:
        """Hear every unit change and take part in every stop of the daemon's supervisor."""
        self._daemon = daemon
        assert daemon.supervisor is not None
        daemon.supervisor.add_listener(self.unit_changed)
        daemon.supervisor.set_before_stop(self.before_stop)

    # -- what the units say
    def unit_changed(self, unit: Unit) -> None:
        name = unit.spec.name
        if unit.state is not UnitState.READY:
            self._draining.discard(name)
        self._want(name, self._state_for(unit))
        self.phase_changed()

    def phase_changed(self, phase: object = None) -> None:
        """After a reload or an upgrade (the daemon's phase moves on): the config may have new topology."""
        if self._daemon is not None and self._daemon.current is not self._laid_out and self.layout_of:
            self._pending.put_nowait("")  # "": the topology is due

    def _state_for(self, unit: Unit) -> ProxyState:
        if unit.state is UnitState.READY and unit.pid is not None and unit.wanted:
            return ProxyState.DRAIN if unit.spec.name in self._draining else ProxyState.READY
        return ProxyState.MAINT

    def _want(self, name: str, state: ProxyState) -> None:
        if self.wanted.get(name) is not state:
            self.wanted[name] = state
            self._pending.put_nowait(name)

    async def before_stop(self, unit: Unit) -> None:
        """Drain the unit's server and wait for its requests, at most drain_timeout."""
        name = unit.spec.name
        if not (self.proxy.drains and self.checked) or self.error or not self.proxy.serves(name) or self._stopping():
            return
        self._draining.add(name)
        self._want(name, ProxyState.DRAIN)
        deadline = asyncio.get_running_loop().time() + self._drain_bound(name)
        try:  # no command is cut off by the deadline: the wait between two is
            async with asyncio.timeout_at(deadline):
                await self._until(lambda: self.applied.get(name) is ProxyState.DRAIN or self.error is not None)
            await self._until_idle(name, deadline)
        except TimeoutError:
            self.log.warning("proxy.drain_timeout", unit=name, after=self.drain_timeout)
        except ProxyError as e:
            self._failed(str(e))
        finally:
            self._draining.discard(name)

    def _drain_bound(self, name: str) -> float:
        """--drain-timeout; PAUSED_DRAIN while event persistence pauses (a persister is not ready)."""
        units = self._daemon.supervisor.units if self._daemon and self._daemon.supervisor else {}
        paused = sorted(p for p in self._persisters if p in units and p != name and units[p].state is not UnitState.READY)
        if paused:
            self.log.info("proxy.drain_short", unit=name, persisters_down=paused, at_most=PAUSED_DRAIN)
            return min(self.drain_timeout, PAUSED_DRAIN)
        return self.drain_timeout

    def _stopping(self) -> bool:
        return self._daemon is not None and self._daemon.lifecycle.stopping

    async def _until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            self._changed.clear()
            await self._changed.wait()

    async def told(self, timeout: float = TOLD_WAIT) -> None:
        """Until the proxy has been told every state wanted now (at most `timeout`, and not while it
        is unavailable), so that a reply to a restart shows the proxy as it is."""
        def caught_up() -> bool:
            return self.error is not None or all(
                self.applied.get(n) is s for n, s in self.wanted.items() if self.proxy.serves(n))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._until(caught_up)

    async def _until_idle(self, name: str, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        while self.error is None and (held := await self.proxy.in_flight(name)) > 0:
            if loop.time() >= deadline:
                self.log.warning("proxy.drain_timeout", unit=name, after=self.drain_timeout, left=held)
                return
            await asyncio.sleep(min(DRAIN_POLL, max(0.0, deadline - loop.time())))
        self.log.info("proxy.drained", unit=name, waited=round(loop.time() - began, 2))

    # -- telling the proxy, in order
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        await self._recheck()
        checked = loop.time()
        while True:
            try:
                async with asyncio.timeout(max(0.0, checked + RECHECK - loop.time())):
                    name = await self._pending.get()
                if name is None:
                    self._closed.set()
                    return
                await (self._lay_out() if name == "" else self._apply(name))
            except TimeoutError:
                pass
            if loop.time() >= checked + RECHECK:
                if self.error or await self._restarted():
                    await self._recheck()
                checked = loop.time()

    async def _restarted(self) -> bool:
        """A proxy restarted while held healthy has lost what it was told: it is told all again."""
        try:
            restarted = await self.proxy.restarted()
        except ProxyError as e:
            self._failed(str(e))
            return False
        if restarted:
            self.log.warning("proxy.restarted", told="everything again")
        return restarted

    async def _recheck(self) -> None:
        """Check the proxy and give it the layout and every unit's state (at start, after an error or a restart)."""
        try:
            layout = await self._layout()
            await self.proxy.check(layout)
            if layout is not None:
                await self.proxy.apply(layout)
        except ProxyError as e:
            self._failed(str(e))
            return
        finally:
            self.checked = True
        self._recovered()
        await self._tell_all(layout)

    async def _layout(self) -> ProxyLayout | None:
        if self._daemon is None or self.layout_of is None:
            return None
        loaded = self._daemon.current
        layout = await asyncio.to_thread(self.layout_of, loaded)
        if layout.errors:
            raise ProxyError(layout.errors[0].format())
        self._laid_out, self._persisters = loaded, frozenset(layout.persisters)
        return layout

    async def _lay_out(self) -> None:
        if self.error or self._daemon is None or self._daemon.current is self._laid_out:
            return
        try:
            layout = await self._layout()
            if layout is None:
                return
            await self.proxy.apply(layout)
        except ProxyError as e:
            self._failed(str(e))
            return
        await self._tell_all(layout)
        if self.error is None:
            self.log.info("proxy.laid_out", servers=len(layout.servers))

    async def _tell_all(self, layout: ProxyLayout | None) -> None:
        """Every unit's state, then the routes: a server added (in maint) is ready before a route
        sends to it, and a server is removed only once no route sends to it."""
        self.applied.clear()
        for name in list(self.wanted):
            await self._apply(name)
        if layout is None or self.error:
            return
        try:
            await self.proxy.route(layout)
        except ProxyError as e:
            self._failed(str(e))

    async def _apply(self, name: str) -> None:
        state = self.wanted.get(name)
        if state is None or self.error or not self.proxy.serves(name) or self.applied.get(name) is state:
            return
        try:
            await self.proxy.set_state(name, state)
        except ProxyError as e:
            self._failed(str(e))
            return
        self.applied[name] = state
        self.log.info(f"proxy.{state.value}", unit=name)
        self._changed.set()

    def _failed(self, error: str) -> None:
        if self.error != error:
            self.log.warning("proxy.unavailable", error=error, supervising="on, without the proxy")
        self.error = error
        self._changed.set()

    def _recovered(self) -> None:
        if self.error is not None:
            self.log.info("proxy.ok")
        self.error = None

    async def close(self, timeout: float = 2.0) -> None:
        """After the daemon's shutdown: what is queued is told, then no more (a command is never cut off)."""
        self._pending.put_nowait(None)
        try:
            async with asyncio.timeout(timeout):
                await self._closed.wait()
        except TimeoutError:
            self.log.warning("proxy.close_timeout", after=timeout)

    # -- status
    def unit_state(self, name: str) -> str:
        if not self.proxy.serves(name):
            return ProxyState.ABSENT.value
        return (self.applied.get(name) or self.wanted.get(name) or ProxyState.MAINT).value

    def status(self) -> dict[str, Any]:
        return {"kind": self.proxy.kind, "target": self.proxy.target, "ok": self.checked and self.error is None,
                "error": self.error, "drains": self.proxy.drains}
