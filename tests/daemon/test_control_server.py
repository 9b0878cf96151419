"""The control server: requests it cannot parse are answered, not a traceback."""

from __future__ import annotations

import asyncio
import json
import socket

from synsup.supervisor.daemon.control_server import ControlServer


def test_a_deeply_nested_request_is_answered_not_a_traceback(short_dir):
    """Regression: `[[[[...` (30,000 deep) raised RecursionError in the control server: the
    connection closed without an answer and daemon.log got a traceback."""
    path = f"{short_dir}/s.sock"

    async def serve() -> bytes:
        server = ControlServer(path, lambda request, send: send({"ok": True}))
        await server.start()

        def client() -> bytes:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(5)
                s.connect(path)
                s.sendall(b"[" * 30000 + b"\n")
                return s.recv(4096)
        try:
            return await asyncio.to_thread(client)
        finally:
            server.close()
    reply = json.loads(asyncio.run(serve()))
    assert reply == {"ok": False, "error": "the request is not JSON"}


def test_every_request_the_protocol_knows_has_a_route_in_the_daemon():
    from synsup.supervisor.daemon.handlers import Requests
    from synsup.supervisor.protocol import FIELDS
    assert set(Requests(daemon=None).routes) == set(FIELDS)  # type: ignore[arg-type]


def test_every_refusal_is_made_by_protocol_refusal():
    """One shape for "no" (issue 17): no module writes an `{"ok": false}` reply by hand."""
    import pathlib
    import re
    supervisor = pathlib.Path(__file__).resolve().parents[2] / "supervisor"
    by_hand = re.compile(r"""["']ok["']\s*:\s*(false|False)""")
    found = [f"{p.relative_to(supervisor)}:{n}" for p in sorted(supervisor.rglob("*.py")) if p.name != "protocol.py"
             for n, line in enumerate(p.read_text().splitlines(), 1) if by_hand.search(line)]
    assert found == []
