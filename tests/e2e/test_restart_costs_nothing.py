"""A restart of synsup costs nothing (issue 20), with real Synapse, PostgreSQL and Redis and a
client sending through the generic worker the whole time: kill -9 of the daemon then `synsup
start` adopts every unit, and `synsup reexec` re-executes the daemon in place; every unit keeps
its pid and not one client request fails."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.parse

import psutil
import pytest
from helpers import wait_for

from e2e.conftest import real_deployment
from e2e.matrix import Client

pytestmark = pytest.mark.e2e


class CountingSender(threading.Thread):
    """One PUT per message, never retried: every answer that is not 200 is a failed request."""

    def __init__(self, client: Client, room: str) -> None:
        super().__init__(daemon=True)
        self.client, self.room = client, room
        self.sent, self.failed = 0, []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            path = f"/_matrix/client/v3/rooms/{urllib.parse.quote(self.room)}/send/m.room.message/c-{self.sent}"
            try:
                status, reply = self.client.request("PUT", path, {"msgtype": "m.text", "body": "c"}, timeout=30)
            except (OSError, urllib.error.URLError, ValueError) as e:
                status, reply = 0, str(e)
            if status == 200:
                self.sent += 1
            else:
                self.failed.append((status, reply))
            self.done.wait(0.05)

    def finish(self) -> None:
        self.done.set()
        self.join(60)


@pytest.fixture(scope="module")
def real():
    yield from real_deployment()


def unit_pids(real):
    return {u["name"]: u["pid"] for u in real.status()["units"] if u["pid"]}


def test_kill_9_then_start_and_reexec_cost_no_request(real):
    assert real.synsup("start", config=True).returncode == 0
    main = Client(f"http://127.0.0.1:{real.ports['main']}")
    worker = Client(f"http://127.0.0.1:{real.ports['generic1']}")
    main.register(real.shared()["registration_shared_secret"], "bob", "builder")
    worker.login("bob", "builder")
    sender = CountingSender(worker, worker.create_room())
    sender.start()
    try:
        wait_for(lambda: sender.sent >= 20, timeout=60, what="20 messages sent")
        before = unit_pids(real)
        with open(os.path.join(real.state_dir, "daemon.json")) as f:
            daemon = json.load(f)["pid"]
        os.kill(daemon, signal.SIGKILL)
        wait_for(lambda: not psutil.pid_exists(daemon) or psutil.Process(daemon).status() == psutil.STATUS_ZOMBIE,
                 what="the daemon to die")
        at_kill = sender.sent
        wait_for(lambda: sender.sent >= at_kill + 20, timeout=60, what="20 messages sent with no daemon")
        began = time.monotonic()
        done = real.synsup("start", config=True)
        adopt_seconds = time.monotonic() - began
        assert done.returncode == 0, done.stdout + done.stderr
        assert unit_pids(real) == before
        status = real.status()
        assert all(u["state"] == "ready" for u in status["units"]), status

        new_daemon = status["daemon"]["pid"]
        began = time.monotonic()
        done = real.synsup("reexec")
        reexec_seconds = time.monotonic() - began
        assert done.returncode == 0, done.stdout + done.stderr
        status = real.status()
        assert status["daemon"]["pid"] == new_daemon and unit_pids(real) == before
        at_reexec = sender.sent
        wait_for(lambda: sender.sent >= at_reexec + 20, timeout=60, what="20 more messages after the reexec")
        assert all(u["state"] == "ready" for u in real.status()["units"])
    finally:
        sender.finish()
    assert sender.failed == [], sender.failed
    print(f"\n{sender.sent} messages sent, 0 failed; start adopting after kill -9: {adopt_seconds:.2f} s; "
          f"reexec: {reexec_seconds:.2f} s")
    assert real.synsup("stop").returncode == 0
