"""peer_checks: a ready unit whose peers cannot reach it as configured (a wrong address, a
secret it does not share, another process answering) is degraded with the reason; a unit
they reach is not."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import subprocess

from fakes import FakeClock, run_supervisor, until

from synsup.supervisor.engine.clock import Clock
from synsup.supervisor.engine.peer_checks import PeerChecks
from synsup.supervisor.engine.unit import Timing
from synsup.supervisor.engine.unit_state import UnitState
from synsup.supervisor.spec import HttpProbe, PeerCheck, UnitSpec

PEER_INTERVAL = 30.0
ADVICE = (("unreachable", "fix the address"), ("500", "share the secret"), ("foreign", "not ours"), ("", "other"))


def _answer(secret: str | None):
    """An HTTP handler that answers 200 to `Authorization: Bearer SECRET` and 500 otherwise."""
    async def answer(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        ok = secret is None or f"authorization: bearer {secret}\r\n".encode() in head.lower()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}" if ok else
                     b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()
    return answer


async def _server(secret: str | None):
    server = await asyncio.start_server(_answer(secret), "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def _check(port: int, secret: str) -> PeerCheck:
    probe = HttpProbe(host="127.0.0.1", port=port, url_path="/repl", headers=(("Authorization", f"Bearer {secret}"),))
    return PeerCheck(probe=probe, route="instance_map.w1", advice=ADVICE)


class _Peers:
    """PeerChecks.check_all of the given checks."""

    def __init__(self, *checks: PeerCheck) -> None:
        self.checks = checks

    async def check_all(self, pid):
        return await PeerChecks(Clock(), 30.0, 2.0, lambda: None).check_all(self.checks, pid)


_peers = _Peers


def test_a_peer_that_shares_the_secret_passes_and_one_that_does_not_says_why():
    async def scenario():
        server, port = await _server("right")
        async with server:
            assert await _peers(_check(port, "right")).check_all(os.getpid()) is None
            why = await _peers(_check(port, "wrong")).check_all(os.getpid())
        assert why == (f"instance_map.w1 (http://127.0.0.1:{port}/repl): answered 'HTTP/1.1 500 Internal Server "
                       "Error'; share the secret")
        assert "wrong" not in why
    asyncio.run(scenario())


def test_an_address_nothing_listens_on_is_unreachable():
    async def scenario():
        server, port = await _server(None)
        server.close()
        await server.wait_closed()
        return await _peers(_check(port, "s")).check_all(None)
    why = asyncio.run(scenario())
    assert why is not None and why.endswith(": Connection refused; fix the address")


def test_an_answer_from_a_process_outside_the_unit_is_foreign():
    """Our test process answers; the unit is a `sleep`: the listener is not the unit's."""
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        async def scenario():
            server, port = await _server(None)
            async with server:
                return await _peers(_check(port, "s")).check_all(sleeper.pid)
        why = asyncio.run(scenario())
    finally:
        sleeper.kill()
        sleeper.wait()
    assert why is not None and f"outside this unit (not pid {sleeper.pid} or its children); not ours" in why


class PeerPaceClock(FakeClock):
    """Fake time, but the peer checks' 30 s wait never ends: one check per process."""

    async def sleep(self, seconds: float) -> None:
        if seconds >= PEER_INTERVAL:
            await asyncio.Event().wait()
        await super().sleep(seconds)


def test_a_ready_unit_whose_peer_check_fails_is_degraded_until_it_stops(tmp_path):
    """Before: `ready`, health ok, every unit settled, while every peer's request failed."""
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    port = listening.getsockname()[1]
    spec = UnitSpec(name="w1", argv=("fake",), notify=False, peer_checks=(_check(port, "wrong"),))
    changes = []

    async def scenario(sup, clock, spawner):
        server = await asyncio.start_server(_answer("right"), sock=listening)
        unit = sup.units["w1"]
        sup.add_listener(lambda u: changes.append(u.degraded))
        async with server:
            sup.start_all()
            await until(lambda: unit.state is UnitState.READY)
            await until(lambda: unit.degraded is not None, turns=100_000)
        assert unit.degraded.startswith(f"instance_map.w1 (http://127.0.0.1:{port}/repl): answered 'HTTP/1.1 500")
        assert not sup.all_ready() and changes[-1] == unit.degraded  # said: the daemon settles `degraded`
        await sup.stop_all()
        assert unit.degraded is None and unit.state is UnitState.STOPPED
    timing = Timing(liveness_interval=None, notify_grace=0.0, peer_interval=PEER_INTERVAL)
    run_supervisor(scenario, [spec], tmp_path, timing, clock=PeerPaceClock())


def test_a_reload_that_gives_a_running_unit_a_peer_check_checks_it_from_its_next_start(tmp_path):
    """The reload's spec replaces the unit's in place (Supervisor.set_spec): the checks are the
    spec's at each start, not the first spec's (a real-Synapse reload to a bad instance_map showed
    nothing)."""
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    port = listening.getsockname()[1]
    plain = UnitSpec(name="w1", argv=("fake",), notify=False)

    async def scenario(sup, clock, spawner):
        server = await asyncio.start_server(_answer("right"), sock=listening)
        unit = sup.units["w1"]
        async with server:
            sup.start_all()
            await until(lambda: unit.state is UnitState.READY)
            sup.set_spec(dataclasses.replace(plain, peer_checks=(_check(port, "wrong"),)))
            spawner.children[0].exit(1)
            await until(lambda: len(spawner.children) == 2 and unit.state is UnitState.READY)
            await until(lambda: unit.degraded is not None, turns=100_000)
        assert "answered 'HTTP/1.1 500" in unit.degraded
        await sup.stop_all()
    timing = Timing(liveness_interval=None, notify_grace=0.0, peer_interval=PEER_INTERVAL)
    run_supervisor(scenario, [plain], tmp_path, timing, clock=PeerPaceClock())
