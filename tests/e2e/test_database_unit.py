"""Real Synapse with PostgreSQL down when `synsup start` runs: synsup says it waits for
postgres, starts nothing, and brings the deployment up by itself once the database answers.
The database is reached through a small TCP relay of this test's own (PostgreSQL itself is
shared with others on the machine, so it is never stopped): the relay not listening is the
database being down."""

from __future__ import annotations

import os
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading

import pytest
from helpers import REPO, free_ports

from e2e.conftest import DB, RealDeployment, _missing, demo

pytestmark = pytest.mark.e2e


class Relay:
    """Accepts on 127.0.0.1:port and pipes each connection to PostgreSQL on 127.0.0.1:5432."""

    def __init__(self, port: int) -> None:
        self.server = socket.create_server(("127.0.0.1", port))
        self.open: set[socket.socket] = set()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _serve(self, client: socket.socket) -> None:
        with client, socket.create_connection(("127.0.0.1", 5432)) as upstream:
            self.open |= {client, upstream}
            with selectors.DefaultSelector() as selector:
                selector.register(client, selectors.EVENT_READ, upstream)
                selector.register(upstream, selectors.EVENT_READ, client)
                while _pump(selector):
                    pass
            self.open -= {client, upstream}

    def close(self) -> None:
        self.server.close()
        for sock in list(self.open):
            sock.shutdown(socket.SHUT_RDWR)
        for thread in self.threads:
            thread.join(10)


def _pump(selector: selectors.BaseSelector) -> bool:
    """Move what is readable to the other side; False once either side closed."""
    for key, _ in selector.select():
        try:
            data = key.fileobj.recv(65536)  # type: ignore[union-attr]
            if not data:
                return False
            key.data.sendall(data)
        except OSError:
            return False
    return True


@pytest.fixture
def down_database():
    missing = _missing()
    if missing:
        pytest.skip(missing)
    root = tempfile.mkdtemp(prefix="sd", dir="/tmp")
    d = RealDeployment(root)
    port = free_ports(1)[0]
    shared = d.shared()
    shared["database"]["args"]["port"] = port
    d.write_shared(shared)
    demo.create_database(d.database, DB)
    relays: list[Relay] = []
    try:
        yield d, port, relays
    finally:
        d.synsup("stop")
        for proc in d.leftovers():
            proc.kill()
        for relay in relays:
            relay.close()
        demo.drop_database(d.database, DB)
        shutil.rmtree(root, ignore_errors=True)


def test_start_waits_for_postgres_then_comes_up_by_itself(down_database):
    d, port, relays = down_database
    argv = [sys.executable, "-m", "synsup", "start", "--state-dir", d.state_dir, "-c", d.config,
            "-a", d.workers_dir, "--python", sys.executable]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                          env={**os.environ}) as start:
        assert start.stdout is not None
        assert start.stdout.readline().strip() == f"waiting for postgres at 127.0.0.1:{port}"
        units = {u["name"]: u for u in d.status()["units"]}
        assert units["postgres"]["state"] != "ready" and units["main"]["pid"] is None
        relays.append(Relay(port))
        out, err = start.communicate(timeout=300)
    assert start.returncode == 0, out + err
    status = d.status()
    assert all(u["state"] == "ready" for u in status["units"]), status
    assert next(u for u in status["units"] if u["name"] == "main")["restarts"] == 0, "main never crash-looped"
