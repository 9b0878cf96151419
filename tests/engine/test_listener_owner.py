"""Whether a probed listener is the unit's own (engine/listener_owner.py): the socket tables
are read once for every probe that asks meanwhile, off the event loop. Before, psutil read
every socket of the machine and every /proc/*/stat once per probe, inside the loop: 500
HTTP-probed units took 20 s from the last spawn to all ready."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time

from synsup.supervisor.engine import listener_owner
from synsup.supervisor.engine.probes import Prober
from synsup.supervisor.spec import HttpProbe


async def _serve_ok(reader, writer):
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
    await writer.drain()
    writer.close()


def count_reads(monkeypatch) -> tuple[list, set]:
    """(one entry per read of the socket tables, the threads that read them)."""
    reads: list = []
    threads: set = set()
    real = listener_owner.read_socket_tables

    def counted():
        reads.append(1)
        threads.add(threading.get_ident())
        return real()
    monkeypatch.setattr(listener_owner, "read_socket_tables", counted)
    return reads, threads


def test_requests_made_before_a_read_began_share_it_and_a_later_one_reads_again(monkeypatch):
    reads, _ = count_reads(monkeypatch)
    rounds = listener_owner._Rounds()
    asked = time.monotonic()  # 30 units asking before any read began
    assert len({id(rounds.since(asked)) for _ in range(30)}) == 1 and len(reads) == 1
    rounds.since(time.monotonic())  # the listener may be newer than that read
    assert len(reads) == 2


def test_many_probes_becoming_healthy_read_the_socket_tables_a_few_times(monkeypatch):
    reads, threads = count_reads(monkeypatch)

    async def main():
        servers = [await asyncio.start_server(_serve_ok, "127.0.0.1", 0) for _ in range(30)]
        probers = [Prober((HttpProbe(host="127.0.0.1", port=s.sockets[0].getsockname()[1]),)) for s in servers]
        for prober in probers:
            prober.owner_pid = os.getpid()
        try:
            return await asyncio.gather(*(p.check_all(5.0) for p in probers))
        finally:
            for prober, server in zip(probers, servers):
                prober.close()
                server.close()
    assert asyncio.run(main()) == [None] * 30
    assert 1 <= len(reads) < 30  # once per round of probes that passed meanwhile, not once per probe
    assert threading.get_ident() not in threads  # never on the event loop's thread


def test_a_unix_socket_listener_is_found_by_its_path(tmp_path):
    path = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(path)
        s.listen()
        assert listener_owner.foreign(
            (HttpProbe(path=path),), os.getpid(), listener_owner.read_socket_tables()) is None
        assert "outside this unit" in (listener_owner.foreign(
            (HttpProbe(path=path + "x"),), os.getpid(), listener_owner.read_socket_tables()) or "")


def test_a_port_listened_on_over_ipv6_is_found(tmp_path):
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        s.listen()
        probe = HttpProbe(host="::1", port=s.getsockname()[1])
        assert listener_owner.foreign((probe,), os.getpid(), listener_owner.read_socket_tables()) is None
