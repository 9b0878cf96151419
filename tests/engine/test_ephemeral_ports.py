"""Ports in the kernel's range for outgoing connections (net.ipv4.ip_local_port_range): a
readiness probe that connects to itself, and a port held by a client connection's local end."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
from fakes import run_supervisor, until
from helpers import REPO

from synsup.supervisor.engine import preflight
from synsup.supervisor.engine.unit import Timing
from synsup.supervisor.engine.unit_state import UnitState
from synsup.supervisor.spec import UnitSpec

needs_netns = pytest.mark.skipif(os.getuid() != 0 or shutil.which("unshare") is None,
                                 reason="a private network namespace needs root and unshare")

# In a private network namespace whose outgoing range is 40000-40001, a connect to
# 127.0.0.1:40000 with nothing listening gets source port 40000: a TCP self-connect.
SELF_CONNECT = """
import asyncio, json, socket
from synsup.supervisor.engine.probes import Prober
from synsup.supervisor.spec import HttpProbe, TcpProbe
async def main():
    out = {}
    for probe in (TcpProbe(host="127.0.0.1", port=40000), HttpProbe(host="127.0.0.1", port=40000)):
        prober = Prober((probe,))
        out[type(probe).__name__] = await prober.check_all(2.0)
        prober.close()
    return out
out = asyncio.run(main())
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Synapse and Redis bind
s.bind(("127.0.0.1", 40000))  # the unit can still have its port
s.listen()
out["listening"] = True
print(json.dumps(out))
"""


@needs_netns
def test_a_readiness_probe_never_connects_to_itself_on_a_port_nothing_listens_on():
    """Units on ports >= 32768 could fail for 300 s: the probe held the port the unit wanted."""
    script = ("ip link set lo up && echo '40000 40001' > /proc/sys/net/ipv4/ip_local_port_range"
              ' && exec "$0" -c "$1"')
    done = subprocess.run(["unshare", "-n", "sh", "-c", script, sys.executable, SELF_CONNECT],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    if done.returncode != 0 and "unshare" in done.stderr:
        pytest.skip(f"no private network namespace here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    for kind in ("TcpProbe", "HttpProbe"):
        assert out[kind] is not None and "nothing listens on port 40000" in out[kind], out
    assert out["listening"]


def _client_connection():
    """A listener and a client socket connected to it: the client's local port is held."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    client = socket.create_connection(server.getsockname())
    accepted, _ = server.accept()
    return accepted, client, server  # closed in this order, the client's end skips TIME_WAIT


def test_a_port_held_by_a_client_connection_says_so_and_names_the_sysctl():
    sockets = _client_connection()
    try:
        port = sockets[1].getsockname()[1]
        why = preflight.address_in_use(f"127.0.0.1:{port}")
        assert why is not None and why.startswith(f"port {port} is held by an outgoing connection of pid {os.getpid()}")
        assert "net.ipv4.ip_local_port_range" in why
        refusal = preflight.preflight(UnitSpec(name="w", argv=("x",), listens=(f"127.0.0.1:{port}",)),
                                      _NoOutput())
        assert refusal is not None and refusal.retry_after is not None and refusal.retry_after <= 5
    finally:
        for s in sockets:
            s.close()


class _NoOutput:
    def check(self):
        return None


def test_a_unit_whose_port_a_client_connection_holds_is_retried_soon_not_failed(tmp_path):
    sockets = _client_connection()
    port = sockets[1].getsockname()[1]
    spec = UnitSpec(name="w", argv=("fake",), notify=False, listens=(f"127.0.0.1:{port}",))

    async def scenario(sup, clock, spawner):
        unit = sup.units["w"]
        sup.start_all()
        await until(lambda: unit.restarts >= 7, 100_000)  # more tries than a crash loop allows
        assert unit.state is not UnitState.FAILED and spawner.children == []
        assert "outgoing connection" in unit.error
        assert clock.sleeps and max(clock.sleeps) <= 5
        for s in sockets:
            s.close()
        await until(lambda: unit.state is UnitState.READY, 100_000)
        await sup.stop_all()
    try:
        run_supervisor(scenario, [spec], tmp_path, Timing(liveness_interval=None, notify_grace=0.0))
    finally:
        for s in sockets:
            s.close()
