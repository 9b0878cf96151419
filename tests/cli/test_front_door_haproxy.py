"""`synsup start --proxy haproxy:SOCKET` with real HAProxy (Debian's, run by the test with the
config `synsup routes --format haproxy` prints) in front of the fake Synapse: a client sends at a
steady rate through HAProxy while a worker is restarted (no request fails) and killed with
SIGKILL (at most the requests in flight on it fail); status shows each unit's proxy state."""

from __future__ import annotations

import http.client
import json
import os
import pathlib
import signal
import socket as socket_module
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


class RunningHAProxy:
    """Debian's HAProxy run in the foreground with `config`; its runtime API on `socket`."""

    def __init__(self, config: str, socket: str, log: str) -> None:
        self.config, self.socket, self.log = config, socket, log
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([binary("haproxy"), "-db", "-f", self.config], stdout=log, stderr=log)
        wait_for(lambda: self.command("show info") is not None, what="HAProxy's admin socket")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=20)

    def command(self, line: str) -> str | None:
        try:
            with socket_module.socket(socket_module.AF_UNIX) as s:
                s.settimeout(5)
                s.connect(self.socket)
                s.sendall(line.encode() + b"\n")
                return b"".join(iter(lambda: s.recv(65536), b"")).decode()
        except OSError:
            return None

    def pid(self) -> str:
        return next(line for line in (self.command("show info") or "").splitlines() if line.startswith("Pid: "))


@pytest.fixture
def behind_haproxy(deployment, short_dir):
    """The deployment started with --proxy, behind a running HAProxy: (deployment, HAProxy's port, HAProxy)."""
    binary("haproxy")
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
    proxy = RunningHAProxy(config, socket, os.path.join(short_dir, "haproxy.log"))
    try:
        proxy.start()
        done = deployment.synsup("start", "--proxy", f"haproxy:{socket}", "--drain-timeout", "5", config=True)
        assert done.returncode == 0, done.stdout + done.stderr
        wait_for(lambda: proxy_states(deployment).get("generic1") == "ready", what="generic1 ready in HAProxy")
        yield deployment, port, proxy
    finally:
        deployment.synsup("stop", timeout=120)
        proxy.stop()


def proxy_states(deployment) -> dict[str, str]:
    return {u["name"]: u.get("proxy") for u in deployment.status()["units"]}


def test_restart_through_haproxy_fails_no_request(behind_haproxy):
    deployment, port, _ = behind_haproxy
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
    deployment, port, _ = behind_haproxy
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
    deployment, _, _ = behind_haproxy
    text = deployment.synsup("status").stdout
    assert "haproxy" in text and "PROXY" in text, text
    assert json.loads(deployment.synsup("status", "--json").stdout)["daemon"]["proxy"]["error"] is None


def test_worker_added_by_reload_joins_haproxy_without_a_haproxy_reload(behind_haproxy):
    deployment, port, _ = behind_haproxy
    deployment.workers["generic2"] = worker("generic2", listener(free_ports(1)[0], "client"))
    deployment.write()
    assert deployment.synsup("reload").returncode == 0
    wait_for(lambda: proxy_states(deployment).get("generic2") == "ready", what="generic2 ready in HAProxy")
    rooms = [f"/_matrix/client/v3/rooms/!r{i}:x/members" for i in range(12)]  # client reads: round robin
    wait_for(lambda: "generic2" in {answer_of(port, path) for path in rooms}, what="HAProxy sending to generic2")
    assert deployment.status()["daemon"]["proxy"]["ok"] is True


def answer_of(port: int, path: str, method: str = "GET") -> str | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request(method, path, body=b"{}" if method != "GET" else None)
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


TYPING = "/_matrix/client/v3/rooms/!r:example.org/typing/@u:example.org"


def typing_moves_to_a_new_worker(deployment) -> None:
    """A reload that adds generic2 and makes it the typing writer (main wrote typing before)."""
    client, replication = free_ports(2)
    deployment.workers["generic2"] = worker("generic2", listener(client, "client"), listener(replication, "replication"))
    deployment.shared["instance_map"]["generic2"] = {"host": "127.0.0.1", "port": replication}
    deployment.shared["stream_writers"]["typing"] = ["generic2"]
    deployment.write()
    done = deployment.synsup("reload")
    assert done.returncode == 0, done.stdout + done.stderr


def test_typing_writer_moving_to_a_worker_reaches_it_through_haproxy_without_a_haproxy_reload(behind_haproxy):
    """Issue 19: the typing endpoints follow their writer at runtime (a server added, the route map
    changed): the same HAProxy process, its config untouched, sends /typing to the new writer."""
    deployment, port, proxy = behind_haproxy
    pid, config = proxy.pid(), pathlib.Path(proxy.config).read_text()
    assert answer_of(port, TYPING, "PUT") == "main"
    typing_moves_to_a_new_worker(deployment)
    wait_for(lambda: answer_of(port, TYPING, "PUT") == "generic2", what="HAProxy sending /typing to generic2")
    assert proxy.pid() == pid and proxy.process.poll() is None and pathlib.Path(proxy.config).read_text() == config
    assert "typing typing" in proxy.command("show map /dev/null")
    assert deployment.status()["daemon"]["proxy"]["ok"] is True


def test_haproxy_restarted_under_the_daemon_is_told_everything_again(behind_haproxy):
    """Issue 19: a HAProxy restarted while synsup holds it healthy starts from its file (typing to
    main, no generic2); synsup sees another process answer and gives it the servers and map again."""
    deployment, port, proxy = behind_haproxy
    typing_moves_to_a_new_worker(deployment)
    wait_for(lambda: answer_of(port, TYPING, "PUT") == "generic2", what="HAProxy sending /typing to generic2")
    proxy.stop()
    proxy.start()
    wait_for(lambda: answer_of(port, TYPING, "PUT") == "generic2", timeout=15, what="the restarted HAProxy told again")
    assert deployment.status()["daemon"]["proxy"]["ok"] is True
