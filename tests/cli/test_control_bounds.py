"""Every client command is bounded: a daemon that does not take requests (SIGSTOP), a request
whose client gave up before the daemon took it, a client preempted by `stop`."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time

import pytest
from fakes import until

from synsup.supervisor.daemon.control_server import ControlClient, ControlError, ControlServer
from synsup.supervisor.daemon.operations import Operations, Stopping


def test_a_client_of_a_daemon_that_takes_no_request_says_so_within_its_bound(short_dir):
    """`synsup stop UNIT` against a frozen daemon waited 600 s without a word."""
    path = os.path.join(short_dir, "c.sock")
    with socket.socket(socket.AF_UNIX) as frozen:  # the kernel queues connections; nobody reads
        frozen.bind(path)
        frozen.listen()
        began = time.monotonic()
        with pytest.raises(ControlError, match="does not answer") as e:
            with ControlClient(path, timeout=600, accept_timeout=0.5) as client:
                client.request({"cmd": "stop", "units": ["pusher1"]})
        assert time.monotonic() - began < 5 and "SIGSTOP" in str(e.value)


def test_a_request_whose_client_gave_up_before_the_daemon_took_it_is_dropped(short_dir):
    handled = []

    async def main():
        async def handler(request, send):
            handled.append(request)
            await send({"ok": True})

        server = ControlServer(os.path.join(short_dir, "c.sock"), handler)
        await server.start()
        try:
            with socket.socket(socket.AF_UNIX) as gone:  # sent, then gave up, while the daemon was frozen
                gone.connect(server.path)
                gone.sendall(json.dumps({"cmd": "stop", "units": ["pusher1"], "ack": True}).encode() + b"\n")
            await until(lambda: server.dropped == 1, 100_000)
            reader, writer = await asyncio.open_unix_connection(server.path)  # a client still there is served
            writer.write(json.dumps({"cmd": "status", "ack": True}).encode() + b"\n")
            async with asyncio.timeout(5):
                assert json.loads(await reader.readline()) == {"ok": True, "taken": True}
                assert json.loads(await reader.readline()) == {"ok": True}
            writer.close()
        finally:
            server.close()
    asyncio.run(main())
    assert handled == [{"cmd": "status"}]


def test_an_operation_preempted_by_stop_is_told_synsup_is_stopping():
    """The client heard "closed the connection without answering"."""
    async def main():
        ops = Operations()
        runner = asyncio.ensure_future(ops.run())
        never = asyncio.Event()
        future = ops.submit("restart", never.wait)
        await until(lambda: ops.current is not None)
        ops.preempt()
        runner.cancel()  # the daemon cancels its helpers as it stops, in the same turn
        done, _ = await asyncio.wait({runner}, timeout=5)
        assert done == {runner} and runner.cancelled(), "the helper task ends when cancelled"
        assert future.done() and isinstance(future.exception(), Stopping)
    asyncio.run(main())


def test_a_connection_cancelled_by_the_stopping_daemon_answers_synsup_is_stopping(short_dir):
    async def main():
        async def handler(request, send):
            await asyncio.Event().wait()  # an operation that never ends

        server = ControlServer(os.path.join(short_dir, "c.sock"), handler)
        await server.start()
        reader, writer = await asyncio.open_unix_connection(server.path)
        writer.write(b'{"cmd": "restart", "ack": true}\n')
        async with asyncio.timeout(5):
            assert json.loads(await reader.readline()) == {"ok": True, "taken": True}
        for task in asyncio.all_tasks() - {asyncio.current_task()}:
            task.cancel()  # what the end of the daemon's event loop does
        async with asyncio.timeout(5):
            assert json.loads(await reader.readline()) == {"ok": False, "error": "synsup is stopping"}
        writer.close()
        server.close()
    asyncio.run(main())
