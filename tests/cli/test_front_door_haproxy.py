"""`synsup start --proxy haproxy:SOCKET` with real HAProxy (Debian's, run by the test with the
config `synsup routes --format haproxy` prints) in front of the fake Synapse: a client sends at a
steady rate through HAProxy while a worker is restarted (no request fails) and killed with
SIGKILL (at most the requests in flight on it fail); status shows each unit's proxy state."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from helpers import binary, free_ports, listener, wait_for, worker

# generic1's (sync by user, client reads round robin), main's as the backup; HAProxy retries a GET
# on another server by itself, never a POST: what a POST meets is what the drain prevents
REQUESTS = [("GET", "/_matrix/client/v3/sync?timeout=0"), ("POST", "/_matrix/client/v3/createRoom")]
RATE = 40  # requests a second
ANSWER_DELAY = 0.2  # seconds the fake takes to answer: requests are in flight when a process goes


class SteadyClient:
    """Sends a GET and a POST in turn every 1/RATE s, each on a thread of its own (so a slow answer holds no other)."""

    def __init__(self, port: int) -> None:
        self.port, self.sent, self.failed, self.errors = port, 0, 0, []
        self.answered_by: dict[str, int] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _one(self, method: str, path: str) -> None:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            connection.request(method, path, body=b"{}" if method == "POST" else None,
                               headers={"Authorization": "Bearer syt_dXNlcg_abc"})
            reply = connection.getresponse()
            server = reply.getheader("X-Fake-Synapse") or ""
            connection.close()
            if reply.status != 200:
                raise OSError(f"{method} HTTP {reply.status}")
            self.answered_by[server] = self.answered_by.get(server, 0) + 1
        except OSError as e:
            self.failed += 1
            self.errors.append(str(e))

    def _send(self) -> None:
        while not self._stop.wait(1 / RATE):
            thread = threading.Thread(target=self._one, args=REQUESTS[self.sent % 2], daemon=True)
            thread.start()
            self._threads.append(thread)
            self.sent += 1

    def __enter__(self) -> SteadyClient:
        self._sender = threading.Thread(target=self._send, daemon=True)
        self._sender.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._sender.join()
        for thread in self._threads:
            thread.join(timeout=15)


@pytest.fixture
def behind_haproxy(deployment, short_dir):
    """The deployment started with --proxy, behind a running HAProxy: (deployment, HAProxy's port)."""
    haproxy = binary("haproxy")
    for name in ("main", "generic1"):
        deployment.behave(name, answer_delay=ANSWER_DELAY)
    port, socket = free_ports(1)[0], os.path.join(short_dir, "admin.sock")
    routes = subprocess.run([sys.executable, "-m", "synsup", "routes", "--format", "haproxy", "--listen",
                             f"127.0.0.1:{port}", "--admin-socket", socket, "-c", deployment.config,
                             "-a", deployment.workers_dir], capture_output=True, text=True, env=deployment.env())
    assert routes.returncode == 0, routes.stderr
    config = os.path.join(short_dir, "haproxy.cfg")
    with open(config, "w") as f:
        f.write(routes.stdout)
    with open(os.path.join(short_dir, "haproxy.log"), "wb") as log:
        proxy = subprocess.Popen([haproxy, "-db", "-f", config], stdout=log, stderr=log)
    try:
        wait_for(lambda: os.path.exists(socket), what="HAProxy's admin socket")
        done = deployment.synsup("start", "--proxy", f"haproxy:{socket}", "--drain-timeout", "5", config=True)
        assert done.returncode == 0, done.stdout + done.stderr
        wait_for(lambda: proxy_states(deployment).get("generic1") == "ready", what="generic1 ready in HAProxy")
        yield deployment, port
    finally:
        deployment.synsup("stop", timeout=120)
        proxy.send_signal(signal.SIGTERM)
        proxy.wait(timeout=20)


def proxy_states(deployment) -> dict[str, str]:
    return {u["name"]: u.get("proxy") for u in deployment.status()["units"]}


def test_restart_through_haproxy_fails_no_request(behind_haproxy):
    deployment, port = behind_haproxy
    with SteadyClient(port) as client:
        time.sleep(1)  # a steady stream before the restart
        began = time.monotonic()
        done = deployment.synsup("restart", "generic1")
        took = time.monotonic() - began
        time.sleep(1)  # and after it
    assert done.returncode == 0, done.stdout + done.stderr
    print(f"\nrestart of generic1 through HAProxy: {client.sent} requests, {client.failed} failed, "
          f"restart took {took:.2f}s")
    assert client.sent >= RATE and client.failed == 0, client.errors[:3]
    assert client.answered_by["generic1"] > RATE / 2  # the requests did go to the worker
    status = deployment.status()
    assert status["daemon"]["proxy"]["ok"] is True and status["daemon"]["proxy"]["kind"] == "haproxy"
    assert proxy_states(deployment)["generic1"] == "ready" and proxy_states(deployment)["redis"] == "absent"


def test_kill_9_through_haproxy_fails_at_most_the_requests_in_flight(behind_haproxy):
    deployment, port = behind_haproxy
    pid = deployment.pids()["generic1"]
    with SteadyClient(port) as client:
        time.sleep(1)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: proxy_states(deployment)["generic1"] == "maint", what="generic1 in maint")
        wait_for(lambda: deployment.pids().get("generic1") not in (None, pid) and
                 proxy_states(deployment)["generic1"] == "ready", what="generic1 back and ready in HAProxy")
        time.sleep(1)
    in_flight = int(RATE * ANSWER_DELAY) + 1  # at most this many were on generic1 when it died
    print(f"\nkill -9 of generic1 through HAProxy: {client.sent} requests, {client.failed} failed "
          f"(at most {in_flight} were in flight)")
    assert client.failed <= in_flight, client.errors[:3]


def test_status_text_shows_the_proxy(behind_haproxy):
    deployment, _ = behind_haproxy
    text = deployment.synsup("status").stdout
    assert "haproxy" in text and "PROXY" in text, text
    assert json.loads(deployment.synsup("status", "--json").stdout)["daemon"]["proxy"]["error"] is None


def test_worker_added_by_reload_joins_haproxy_without_a_haproxy_reload(behind_haproxy):
    deployment, port = behind_haproxy
    deployment.workers["generic2"] = worker("generic2", listener(free_ports(1)[0], "client"))
    deployment.write()
    assert deployment.synsup("reload").returncode == 0
    wait_for(lambda: proxy_states(deployment).get("generic2") == "ready", what="generic2 ready in HAProxy")
    rooms = [f"/_matrix/client/v3/rooms/!r{i}:x/members" for i in range(12)]  # client reads: round robin
    wait_for(lambda: "generic2" in {answer_of(port, path) for path in rooms}, what="HAProxy sending to generic2")
    assert deployment.status()["daemon"]["proxy"]["ok"] is True


def answer_of(port: int, path: str) -> str | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        return connection.getresponse().getheader("X-Fake-Synapse")
    except OSError:
        return None
    finally:
        connection.close()


def test_start_with_an_unreachable_socket_warns_once_and_runs(deployment, short_dir):
    socket = os.path.join(short_dir, "no-haproxy.sock")
    done = deployment.synsup("start", "--proxy", f"haproxy:{socket}", config=True)
    assert done.returncode == 0, done.stdout + done.stderr
    warnings = [line for line in done.stderr.splitlines() if "warning: proxy" in line]
    assert len(warnings) == 1 and f"cannot reach {socket}" in warnings[0], done.stderr
    assert "synsup routes --format haproxy" in warnings[0] and "Traceback" not in done.stderr
    assert all(u["state"] == "ready" for u in deployment.status()["units"])


def test_bad_proxy_option_refuses_the_start_before_anything_runs(deployment):
    done = deployment.synsup("start", "--proxy", "traefik:/x", config=True)
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [
        "synsup: error: --proxy traefik:/x: expected haproxy:/path/to/admin.sock or "
        "nginx:/path/to/conf.d/synapse-routes.conf"], done.stderr
