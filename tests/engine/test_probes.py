"""Probes against small local servers: healthy, unhealthy, refused, silent, UNIX socket."""

from __future__ import annotations

import asyncio
import os

from helpers import free_ports

from synsup.supervisor.engine.passing_checks import PassingChecks
from synsup.supervisor.engine.probes import Prober, check
from synsup.supervisor.spec import HttpProbe, RedisProbe, TcpProbe


def serve(reply: bytes | None, path: str | None = None, handlers: list | None = None):
    async def handle(reader, writer):
        if handlers is not None:
            handlers.append(asyncio.current_task())
        await reader.readline()
        if reply is None:
            await reader.read()  # silent until the probe gives up and hangs up
        else:
            writer.write(reply)
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def start():
        if path:
            return await asyncio.start_unix_server(handle, path)
        return await asyncio.start_server(handle, "127.0.0.1", 0)
    return start


def run(reply, probe_for, path=None, timeout=1.0):
    async def main():
        handlers: list = []
        server = await serve(reply, path, handlers)()
        port = server.sockets[0].getsockname()[1] if not path else None
        try:
            return await check(probe_for(port), timeout)
        finally:
            server.close()
            await asyncio.gather(*handlers, return_exceptions=True)
    return asyncio.run(main())


def test_http_200_is_healthy():
    assert run(b"HTTP/1.1 200 OK\r\n\r\nOK", lambda p: HttpProbe(host="127.0.0.1", port=p)) is None


def test_http_500_says_what_it_answered():
    why = run(b"HTTP/1.1 500 Internal Server Error\r\n\r\n", lambda p: HttpProbe(host="127.0.0.1", port=p))
    assert "answered 'HTTP/1.1 500 Internal Server Error'" in why


def test_silence_times_out():
    why = run(None, lambda p: HttpProbe(host="127.0.0.1", port=p), timeout=0.2)
    assert "did not answer within 0.2s" in why


def test_refused_connection():
    (port,) = free_ports(1)
    why = asyncio.run(check(HttpProbe(host="127.0.0.1", port=port), 1.0))
    assert why.startswith(f"http://127.0.0.1:{port}/health: ") and "refused" in why.lower()


def test_unix_socket_listener(tmp_path):
    path = str(tmp_path / "h.sock")
    assert run(b"HTTP/1.0 200 OK\r\n\r\n", lambda p: HttpProbe(path=path), path=path) is None


def test_redis_auth_and_ping():
    assert run(b"+OK\r\n+PONG\r\n", lambda p: RedisProbe(host="127.0.0.1", port=p, password="x")) is None
    why = run(b"-WRONGPASS invalid password\r\n-NOAUTH\r\n", lambda p: RedisProbe(host="127.0.0.1", port=p, password="x"))
    assert "refused AUTH: -WRONGPASS" in why


def test_check_all_joins_failures():
    (port,) = free_ports(1)
    probes = (HttpProbe(host="127.0.0.1", port=port), HttpProbe(host="127.0.0.1", port=port, url_path="/x"))
    why = asyncio.run(Prober(probes).check_all(1.0))
    assert why.count("refused") == 2 and "; " in why


def test_prober_keeps_the_connection_alive_and_recovers_when_it_is_closed():
    async def scenario(prober, connections):
        assert await prober.check_all(1.0) is None
        assert len(connections) == 1, "the second check reuses the connection"
        connections[0].close()  # the server drops the kept connection
        await connections[0].wait_closed()
        assert await prober.check_all(1.0) is None
        assert len(connections) == 2, "a stale connection is replaced, not reported"
    settled([], scenario)


def test_tcp_probe_is_healthy_when_it_connects(tmp_path):
    assert run(b"", lambda p: TcpProbe(host="127.0.0.1", port=p)) is None
    path = str(tmp_path / ".s.PGSQL.5432")
    assert run(b"", lambda p: TcpProbe(path=path), path=path) is None


def test_tcp_probe_says_refused():
    port = free_ports(1)[0]
    why = asyncio.run(check(TcpProbe(host="127.0.0.1", port=port), 1.0))
    assert why == f"127.0.0.1:{port}: Connection refused"
    why = asyncio.run(check(TcpProbe(path="/nonexistent/.s.PGSQL.5432"), 1.0))
    assert why == "unix:/nonexistent/.s.PGSQL.5432: No such file or directory"


def test_a_kept_connection_joins_the_event_loop_once_not_at_every_check():
    """py-spy of 500 settled HTTP-probed units: adding and removing the socket at each check
    (two epoll_ctl calls and a KeyError raised inside asyncio) was a fifth of the probes' CPU."""
    async def main():
        writers = []

        async def handle(reader, writer):
            writers.append(writer)
            try:
                while await reader.readuntil(b"\r\n\r\n"):
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()

        loop = asyncio.get_running_loop()
        added = []
        add_reader = loop.add_reader
        loop.add_reader = lambda fd, *a: added.append(fd) or add_reader(fd, *a)  # type: ignore[method-assign]
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        prober = Prober((HttpProbe(host="127.0.0.1", port=server.sockets[0].getsockname()[1]),))
        try:
            for _ in range(3):
                assert await prober.check_all(1.0) is None
            assert len(added) == 1, added
        finally:
            prober.close()
            server.close()
            for writer in writers:
                writer.close()
            await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)
            await server.wait_closed()
    asyncio.run(main())


def kept_alive_server(replies: list[bytes | None]):
    """A server answering each request on a connection with the next of `replies` (None: silent
    from then on), then 200 OK; its writers, to close them."""
    writers: list = []

    async def handle(reader, writer):
        writers.append(writer)
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                reply = replies.pop(0) if replies else b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"
                if reply is None:
                    await reader.read()
                    break
                writer.write(reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()
    return handle, writers


def settled(replies: list[bytes | None], scenario) -> None:
    """`scenario(prober, writers)` against kept_alive_server(replies), after a first check
    (on check_all) that confirmed the listener and kept the connection."""
    async def main():
        handle, writers = kept_alive_server(replies)
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        prober = Prober((HttpProbe(host="127.0.0.1", port=server.sockets[0].getsockname()[1]),))
        try:
            assert await prober.check_all(1.0) is None
            await scenario(prober, writers)
        finally:
            prober.close()
            server.close()
            for writer in writers:
                writer.close()
            await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)
            await server.wait_closed()
    asyncio.run(main())


def test_a_settled_check_reuses_the_kept_connection_without_a_coroutine_and_recovers_when_it_is_closed():
    async def scenario(prober, writers):
        verdict = prober.settled_check(1.0)
        assert isinstance(verdict, asyncio.Future), "the kept connection is checked by callbacks"
        assert await verdict is None
        assert await prober.settled_check(1.0) is None
        assert len(writers) == 1 and prober.last_seconds > 0
        writers[0].close()  # the server drops the kept connection
        await writers[0].wait_closed()
        assert await prober.settled_check(1.0) is None
        assert len(writers) == 2, "a stale connection is replaced, not reported"
        assert await prober.settled_check(1.0) is None
        assert len(writers) == 2
    settled([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"], scenario)


def test_a_settled_check_says_what_a_kept_connection_answered_and_opens_a_fresh_one_next():
    async def scenario(prober, writers):
        why = await prober.settled_check(1.0)
        assert why == f"{prober.probes[0].describe()} answered 'HTTP/1.1 503 Service Unavailable'"
        assert await prober.settled_check(1.0) is None
        assert len(writers) == 2, "the failed reply's connection is not kept"
    settled([b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
             b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"], scenario)


def test_a_settled_check_of_a_silent_process_times_out_and_a_cancelled_one_leaves_no_socket():
    replies: list[bytes | None] = [b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", None]

    async def scenario(prober, writers):
        assert await prober.settled_check(0.2) == f"{prober.probes[0].describe()} did not answer within 0.2s"
        fds = len(os.listdir("/proc/self/fd"))
        assert await prober.check_all(1.0) is None  # a fresh connection, kept
        assert len(os.listdir("/proc/self/fd")) == fds + 1
        replies.append(None)
        waiting = asyncio.ensure_future(prober.settled_check(5.0))
        await asyncio.sleep(0.05)
        waiting.cancel()  # the unit is stopped while its check waits
        await asyncio.gather(waiting, return_exceptions=True)
        assert len(os.listdir("/proc/self/fd")) == fds, "the cancelled check's connection is closed"
    settled(replies, scenario)


def test_passing_checks_run_on_callbacks_until_one_fails_and_say_why():
    """A ready unit's passing checks wake no task: PassingChecks' future stays pending while
    they pass, and resolves with the first failure's reason for the unit's task to count."""
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

    async def scenario(prober, writers):
        passed: list[float] = []
        checks = PassingChecks(prober, 1.0, lambda: 0.01, passed.append)
        why = await asyncio.wait_for(checks.verdict, 10)
        assert why == f"{prober.probes[0].describe()} answered 'HTTP/1.1 503 Service Unavailable'"
        assert len(passed) == 4 and all(seconds > 0 for seconds in passed)
        assert len(writers) == 1, "every check on the kept connection"
    settled([ok, ok, ok, ok, ok, b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"], scenario)


def test_passing_checks_hand_a_check_needing_a_coroutine_to_the_task():
    async def scenario(prober, writers):
        prober.owner_pid = 12345  # a new process: its listeners are not confirmed yet
        checks = PassingChecks(prober, 1.0, lambda: 0.01, lambda seconds: None)
        assert await asyncio.wait_for(checks.verdict, 10) is None
    settled([], scenario)


def test_passing_checks_cancelled_mid_check_leave_no_socket_and_no_timer():
    replies: list[bytes | None] = [b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", None]

    async def scenario(prober, writers):
        fds = len(os.listdir("/proc/self/fd"))
        checks = PassingChecks(prober, 5.0, lambda: 0.01, lambda seconds: None)
        await asyncio.sleep(0.2)  # the silent server holds the check
        assert checks._check is not None
        checks.verdict.cancel()  # the unit stops
        for _ in range(100):  # the cancellations are told by callbacks, a turn of the loop each
            if len(os.listdir("/proc/self/fd")) < fds:
                break
            await asyncio.sleep(0)
        assert checks._check is None and checks._next is None
        assert len(os.listdir("/proc/self/fd")) < fds, "the kept connection in the check is closed"
    settled(replies, scenario)


def test_passing_checks_are_told_their_verdicts_without_a_future_through_a_dropped_connection_and_a_timeout():
    """PassingChecks is told each verdict by the callback that read it (SettledCheck's `told`):
    a kept connection the server dropped is checked again on a fresh one and still counts as
    passed; a silent server's check ends at its timeout with the reason."""
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

    async def scenario(prober, writers):
        passed: list[float] = []
        checks = PassingChecks(prober, 0.3, lambda: 0.01, passed.append)
        async with asyncio.timeout(10):
            while len(passed) < 2:
                await asyncio.sleep(0.005)
            assert checks._check is None or checks._check.verdict is None, "no future for a told check"
            writers[0].close()  # the server drops the kept connection between two checks
            while len(writers) < 2:
                await asyncio.sleep(0.005)
            why = await checks.verdict
        assert len(passed) >= 3, "the check on a fresh connection passed"
        assert why == f"{prober.probes[0].describe()} did not answer within 0.3s"
    settled([ok, ok, ok, ok, None], scenario)


def test_a_replys_head_says_whether_its_connection_is_kept():
    from synsup.supervisor.engine.probe_connection import ProbeFailed
    from synsup.supervisor.engine.probes import _reply_keeps

    probe = HttpProbe(host="127.0.0.1", port=8008)
    cases = [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK", True),
        (b"HTTP/1.1 200 OK\r\nServer: Synapse\r\nDate: x\r\ncontent-length: 2\r\n\r\nOK", True),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: Close\r\n\r\nOK", False),
        (b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nOK", True),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nOK", False),  # more body to come: not reusable as is
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nOK", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nOK", False),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nContent-Length: 2\r\n\r\nOK", True),  # the last one
        (b"HTTP/1.1 200 OK\r\nX-Content-Length: 2\r\n\r\nOK", False),  # not the header asked for
    ]
    for data, keep in cases:
        assert _reply_keeps(probe, data) is keep, data
    for data, status in [(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", 503),
                         (b"garbage\r\n\r\n", None), (b"HTTP/1.1 20O OK\r\n\r\n", None)]:
        try:
            _reply_keeps(probe, data)
        except ProbeFailed as e:
            first = data.split(b"\r\n")[0].decode()
            assert e.status == status and f"answered {first!r}" in str(e), e
        else:
            raise AssertionError(data)
