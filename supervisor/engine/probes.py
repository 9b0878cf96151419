"""Health probes: one request, the first reply lines, over a bare non-blocking socket.

Cheap enough to run every 10 s on hundreds of units: no streams, no HTTP client library, no
DNS for numeric hosts (asyncio resolves IP literals without a thread), and plain HTTP
connections kept alive between checks."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable

from ..spec import HttpProbe, Probe, TcpProbe
from .listener_owner import foreign_listeners
from .preflight import not_listening_yet
from .probe_connection import ProbeConnection, ProbeFailed, reply_text
from .redis_probe import redis_ping
from .timer_groups import timer_groups


class _Stale(Exception):
    """A kept-alive connection the peer had closed: try again on a fresh one."""


def _request_bytes(probe: HttpProbe) -> bytes:
    extra = "".join(f"{name}: {value}\r\n" for name, value in probe.headers)
    return f"GET {probe.url_path} HTTP/1.1\r\nHost: {probe.host or 'localhost'}\r\n{extra}\r\n".encode()


async def _http_on(conn: ProbeConnection, probe: HttpProbe) -> bool:
    """One HTTP/1.1 request on an open connection: whether to keep it open."""
    await conn.send(_request_bytes(probe))
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await conn.recv()
        if not chunk:
            raise _Stale() if not data else ProbeFailed(f"{probe.describe()} closed mid-reply")
        data += chunk
    return _reply_keeps(probe, data)


def _reply_keeps(probe: HttpProbe, data: bytes) -> bool:
    """Whether a reply whose head is all in `data` leaves the connection to be kept; ProbeFailed
    unless its status is 200. The two headers that matter are found in the head, not every
    header parsed (the reply of every settled check: 50 a second with 500 units)."""
    head, _, body = data.partition(b"\r\n\r\n")
    end = head.find(b"\r\n")
    status = head if end < 0 else head[:end]
    parts = status.split()
    if len(parts) < 2 or parts[1] != b"200":
        raise ProbeFailed(f"{probe.describe()} answered {reply_text(status)!r}",
                          int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None)
    if not status.startswith(b"HTTP/1.1"):
        return False
    lowered = head.lower()
    length = _header(lowered, b"content-length")
    return length.isdigit() and len(body) == int(length) and _header(lowered, b"connection") != b"close"


def _header(lowered_head: bytes, name: bytes) -> bytes:
    """The value of header `name` (lowercase) in a lowercased reply head; the last one when
    repeated; b"" when absent."""
    at = lowered_head.rfind(b"\r\n" + name + b":")
    if at < 0:
        return b""
    start = at + len(name) + 3
    end = lowered_head.find(b"\r\n", start)
    return lowered_head[start:end if end >= 0 else len(lowered_head)].strip()


async def _connect(probe: TcpProbe) -> None:
    loop = asyncio.get_running_loop()
    family = socket.AF_UNIX if probe.path else (socket.AF_INET6 if ":" in (probe.host or "") else socket.AF_INET)
    with socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC) as sock:
        await loop.sock_connect(sock, probe.path or (probe.host, probe.port))


def failure_reason(e: OSError | ValueError) -> str:
    """An errno in words; an SSL error in its own (its errno is OpenSSL's code, not the OS's)."""
    ssl = sys.modules.get("ssl")
    if isinstance(e, OSError) and e.errno and not (ssl is not None and isinstance(e, ssl.SSLError)):
        return os.strerror(e.errno)
    return str(e)


async def _verdict(probe: Probe, timeout: float, work: Awaitable[None]) -> str | None:
    """Run a probe's work under its timeout: None when healthy, else one line saying why not."""
    try:
        async with asyncio.timeout(timeout):
            await work
    except ProbeFailed as e:
        return str(e)
    except TimeoutError:
        return f"{probe.describe()} did not answer within {timeout:g}s"
    except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
        return f"{probe.describe()}: {failure_reason(e)}"
    return None


class Prober:
    """A unit's probes, keeping HTTP connections alive between checks (half the CPU of a new
    TCP connection each time). A kept connection that turns out closed is retried once on a
    fresh one; only a fresh connection's failure counts."""

    # one per unit: no __dict__
    __slots__ = ("probes", "_kept", "last_seconds", "owner_pid", "_confirmed", "_listening", "_request_line")

    def __init__(self, probes: tuple[Probe, ...]) -> None:
        self.probes = probes
        self._kept: dict[int, ProbeConnection] = {}  # by id(probe): a probe's dataclass hash is its every field's
        self.last_seconds = 0.0  # how long the last check_all took
        self.owner_pid: int | None = None  # the unit's process: the one that must be answering
        self._confirmed: int | None = None  # the pid whose HTTP listeners were confirmed as its own
        self._listening: set[Probe] = set()  # probes whose port was seen listening in this run
        self._request_line: bytes | None = None  # the settled check's request, made once

    def settled_check(self, timeout: float) -> Awaitable[str | None]:
        """A liveness check: check_all, but a unit's one plain HTTP probe on the connection kept
        from the last check is done without any coroutine. The request is sent at once, the
        reply is parsed by the loop's readiness callback, and one timer stands for the timeout
        (the coroutine layers and asyncio.timeout were most of the daemon's CPU per settled
        probe, at 50 probes a second for 500 units). The verdicts are check_all's; a kept
        connection found closed is checked again by check_all, on a fresh one."""
        check = self.start_settled(timeout)
        if check is None:
            return self.check_all(timeout)
        assert check.verdict is not None
        return check.verdict

    def start_settled(self, timeout: float, told: Callable[[str | None], None] | None = None) -> SettledCheck | None:
        """settled_check's check without a coroutine, its request sent; None when this check
        needs check_all (not one plain HTTP probe, no kept connection, its listeners not yet
        confirmed as the process's own, the connection found closed). Its verdict is the
        check's future, or with `told`, handed to it straight from the loop's callback."""
        probe = self.probes[0]
        if len(self.probes) != 1 or not isinstance(probe, HttpProbe) or self.owner_pid != self._confirmed:
            return None
        conn = self._kept.pop(id(probe), None)
        if conn is None or conn.sock is None:
            if conn is not None:
                self._kept[id(probe)] = conn  # TLS: its streams
            return None
        request = self._request_line or _request_bytes(probe)
        self._request_line = request
        started = time.perf_counter()
        try:
            sent = conn.sock.send(request)
        except OSError:
            sent = -1
        if sent != len(request):  # closed by the peer, or a full buffer: a fresh connection
            conn.close()
            return None
        return SettledCheck(self, probe, conn, timeout, started, told)

    async def check_all(self, timeout: float) -> str | None:
        started = time.perf_counter()
        try:
            return await self._check_all(timeout)
        finally:
            self.last_seconds = time.perf_counter() - started

    async def _check_all(self, timeout: float) -> str | None:
        if len(self.probes) == 1:
            why = await self._check(self.probes[0], timeout)
        else:
            results = await asyncio.gather(*(self._check(p, timeout) for p in self.probes))
            why = "; ".join(r for r in results if r) or None
        return why or await self._confirm_listeners()

    async def _confirm_listeners(self) -> str | None:
        """Once per process, when its HTTP probes first pass: the listeners are its own."""
        pid = self.owner_pid
        if pid is None or pid == self._confirmed:
            return None
        why = await foreign_listeners(self.probes, pid)
        if why is None:
            self._confirmed = pid
        return why

    async def _check(self, probe: Probe, timeout: float) -> str | None:
        if probe not in self._listening:
            if probe.path is None and probe.port is not None and (why := not_listening_yet(probe.port)):
                return f"{probe.describe()}: {why}"
        why = await _verdict(probe, timeout, self._work(probe))
        if why is None:
            self._listening.add(probe)  # this process listens: no more /proc reads for this probe
        return why

    def _work(self, probe: Probe) -> Awaitable[None]:
        work: Awaitable[None]
        if isinstance(probe, HttpProbe):
            work = self._http(probe)
        elif isinstance(probe, TcpProbe):
            work = _connect(probe)
        else:
            work = redis_ping(probe, self.owner_pid)
        return work

    async def _http(self, probe: HttpProbe) -> None:
        conn = self._kept.pop(id(probe), None)
        if conn is not None:
            try:
                return await self._request(probe, conn)
            except (_Stale, OSError):
                pass  # closed by the peer since the last check: one more try on a new one
        try:
            await self._request(probe, await ProbeConnection.open(probe))
        except _Stale:
            raise ProbeFailed(f"{probe.describe()} closed the connection without answering") from None

    async def _request(self, probe: HttpProbe, conn: ProbeConnection) -> None:
        try:
            keep = await _http_on(conn, probe)
        except BaseException:
            conn.close()
            raise
        if keep:
            self.keep(probe, conn)
        else:
            conn.close()

    def keep(self, probe: HttpProbe, conn: ProbeConnection) -> None:
        """The connection `probe` checks on next time (one at most: another is closed)."""
        old = self._kept.pop(id(probe), None)
        if old is not None and old is not conn:
            old.close()
        self._kept[id(probe)] = conn

    def close(self) -> None:
        for conn in self._kept.values():
            conn.close()
        self._kept.clear()


class SettledCheck:
    """Prober.settled_check's reply: read by the loop's callback, its verdict a future, or told
    to `told` right there (PassingChecks: no future, no callback of the loop's between the
    reply and the next check's timer)."""

    __slots__ = ("prober", "probe", "conn", "timeout", "started", "data", "verdict", "told", "_groups", "_timeout",
                 "_reading", "_again")

    def __init__(self, prober: Prober, probe: HttpProbe, conn: ProbeConnection, timeout: float,
                 started: float, told: Callable[[str | None], None] | None = None) -> None:
        self.prober, self.probe, self.conn, self.timeout, self.started = prober, probe, conn, timeout, started
        self.data = b""
        loop = asyncio.get_running_loop()
        self.told = told
        self.verdict: asyncio.Future[str | None] | None = None
        if told is None:
            self.verdict = loop.create_future()
            self.verdict.add_done_callback(self._abandoned)
        self._groups = timer_groups()
        self._timeout = self._groups.at(loop.time() + timeout, self, self._timed_out)
        self._reading = True  # until _end
        self._again: asyncio.Future[str | None] | None = None
        conn.expect(self._on_bytes)

    def _on_bytes(self, chunk: bytes) -> None:
        if not chunk:
            self._end(keep=False)
            if not self.data:  # closed since the last check: once more, on a fresh connection
                self._again = asyncio.ensure_future(self.prober.check_all(self.timeout))
                self._again.add_done_callback(self._again_done)
            else:
                self._done(f"{self.probe.describe()} closed mid-reply")
            return
        self.data += chunk
        if b"\r\n\r\n" not in self.data:
            return
        try:
            keep = _reply_keeps(self.probe, self.data)
        except ProbeFailed as e:
            self._end(keep=False)
            self._done(str(e))
            return
        self._end(keep=keep)
        self._done(None)

    def _timed_out(self) -> None:
        self._end(keep=False)
        self._done(f"{self.probe.describe()} did not answer within {self.timeout:g}s")

    def _end(self, keep: bool) -> None:
        """The reply is read (or given up on): the connection kept for the next check, or closed."""
        self._reading = False
        self._groups.cancel(self._timeout, self)
        self.conn.expect(None)
        if keep:
            self.prober.keep(self.probe, self.conn)
        else:
            self.conn.close()

    def _done(self, why: str | None) -> None:
        self.prober.last_seconds = time.perf_counter() - self.started
        told, self.told = self.told, None
        if told is not None:
            told(why)
        elif self.verdict is not None and not self.verdict.done():
            self.verdict.set_result(why)

    def _again_done(self, again: asyncio.Future[str | None]) -> None:
        if again.cancelled():
            return
        told, self.told = self.told, None
        if told is not None:
            told(again.result())
        elif self.verdict is not None and not self.verdict.done():
            self.verdict.set_result(again.result())

    def _abandoned(self, verdict: asyncio.Future[str | None]) -> None:
        if verdict.cancelled():
            self.abandon()

    def abandon(self) -> None:
        """Its waiter is gone (the unit stops): nothing of the check stays behind, nothing is told."""
        self.told = None
        if self._again is not None:
            self._again.cancel()
        elif self._reading:
            self._end(keep=False)


async def http_request(probe: HttpProbe) -> bool:
    """One request on a fresh connection, headers included; ProbeFailed unless answered 200.
    Whether the peer was this machine (its listener can be looked up in our socket tables)."""
    conn = await ProbeConnection.open(probe)
    try:
        local = conn.to_this_host()
        try:
            await _http_on(conn, probe)
        except _Stale:
            raise ProbeFailed(f"{probe.describe()} closed the connection without answering") from None
        return local
    finally:
        conn.close()


async def check(probe: Probe, timeout: float) -> str | None:
    """One check on a new connection: None when healthy, else why not."""
    prober = Prober((probe,))
    try:
        return await prober.check_all(timeout)
    finally:
        prober.close()
