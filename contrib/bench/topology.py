"""Adding and then removing an event persister while a client sends messages at a steady rate
through a generic worker (real Synapse, PostgreSQL, Redis). Prints, per change: edit -> all
ready (s), failed client requests, and at the end lost and duplicated messages.

Needs real Synapse in this interpreter and PostgreSQL with role synsup/synsup (as
contrib/test.sh sets up). Prints figures; asserts nothing.

  .venv/bin/python contrib/bench/topology.py [--rate 5] [--synsup-path DIR]

--synsup-path runs another synsup: a directory holding a `synsup/` checkout (e.g. a git
worktree of an older commit), put first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "contrib", "demo"))
sys.path.insert(0, os.path.join(REPO, "tests"))

import deployment as demo  # noqa: E402
import yaml  # noqa: E402
from e2e.matrix import Client  # noqa: E402
from helpers import free_ports  # noqa: E402

DB = {"user": "synsup", "password": "synsup"}


class SteadySender(threading.Thread):
    """One message every 1/rate s; each retried with its transaction id until it succeeds.
    Every failed attempt is a failed client request, with its time."""

    def __init__(self, client: Client, room: str, rate: float) -> None:
        super().__init__(daemon=True)
        self.client, self.room, self.interval = client, room, 1.0 / rate
        self.sent: list[str] = []
        self.failures: list[float] = []
        self.waits: list[tuple[float, float]] = []  # (first failure, success) of each delayed message
        self.stopping = threading.Event()

    def run(self) -> None:
        due = time.monotonic()
        for i in range(10**6):
            if self.stopping.wait(max(0.0, due - time.monotonic())):
                return
            self._send(f"b {i}", f"b-{i}")
            due += self.interval

    def _send(self, text: str, txn: str) -> None:
        path = f"/_matrix/client/v3/rooms/{urllib.parse.quote(self.room)}/send/m.room.message/{txn}"
        delay, first_failure = 0.1, None
        while not self.stopping.is_set():
            try:
                status, _ = self.client.request("PUT", path, {"msgtype": "m.text", "body": text}, timeout=30)
                if status == 200:
                    self.sent.append(text)
                    if first_failure is not None:
                        self.waits.append((first_failure, time.time()))
                    return
            except (OSError, ValueError):
                pass  # refused, reset, timed out, or a reply that is not JSON
            self.failures.append(time.time())
            first_failure = first_failure or self.failures[-1]
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def failed_between(self, start: float, end: float) -> int:
        return sum(start <= t <= end for t in self.failures)

    def outage_between(self, start: float, end: float) -> float:
        """Seconds in [start, end] during which the client could not send (a message was waiting)."""
        spans = sorted((max(a, start), min(b, end)) for a, b in self.waits if b >= start and a <= end)
        total, reach = 0.0, start
        for a, b in spans:
            total += max(0.0, b - max(a, reach))
            reach = max(reach, b)
        return total


class Bench:
    def __init__(self, root: str, synsup_path: str | None) -> None:
        self.root, self.state = root, os.path.join(root, "s")
        self.ports = dict(zip(["main", "replication", "persister1", "persister2", "generic1", "redis",
                               "persister3"], free_ports(7)))
        self.database = f"synsup_topology_{os.getpid()}"
        self.config, self.workers = demo.write(os.path.join(root, "d"), sys.executable,
                                               {**DB, "database": self.database}, self.ports)
        self.env = {**os.environ}
        if synsup_path:
            self.env["PYTHONPATH"] = synsup_path

    def synsup(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "synsup", *args, "--state-dir", self.state],
                              capture_output=True, text=True, env=self.env, cwd="/")

    def status(self) -> dict:
        return json.loads(self.synsup("status", "--json").stdout)

    def all_ready_after(self, generation: int, units: int) -> bool:
        status = self.status()
        states = [u["state"] for u in status["units"]]
        return (status["daemon"]["config_generation"] > generation and len(states) == units
                and all(s == "ready" for s in states))

    def shared(self) -> dict:
        with open(self.config) as f:
            return yaml.safe_load(f)

    def write_shared(self, config: dict) -> None:
        demo.dump(self.config, config)


def wait(condition, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for the deployment to settle")
        time.sleep(0.2)


def change(bench: Bench, label: str, edit, units: int) -> tuple[str, float, float]:
    """Apply an edit and wait until the deployment settled: (label, edit time, all-ready time)."""
    generation = bench.status()["daemon"]["config_generation"]
    began = time.time()
    edit()
    wait(lambda: bench.all_ready_after(generation, units))
    return label, began, time.time()


def add_persister3(bench: Bench) -> None:
    shared = bench.shared()
    shared["instance_map"]["persister3"] = {"host": "127.0.0.1", "port": bench.ports["persister3"]}
    shared["stream_writers"]["events"].append("persister3")
    bench.write_shared(shared)  # rejected alone (persister3 is no process yet), applied with its file
    demo.dump(os.path.join(bench.workers, "persister3.yaml"), {
        "worker_app": "synapse.app.generic_worker", "worker_name": "persister3",
        "worker_log_config": shared["log_config"],
        "worker_listeners": [demo.http(bench.ports["persister3"], "replication")]})


def remove_persister3(bench: Bench) -> None:
    os.unlink(os.path.join(bench.workers, "persister3.yaml"))  # rejected alone, applied with the shared edit
    shared = bench.shared()
    shared["stream_writers"]["events"].remove("persister3")
    del shared["instance_map"]["persister3"]
    bench.write_shared(shared)


def run(bench: Bench, rate: float) -> None:
    began = time.monotonic()
    done = bench.synsup("start", "-c", bench.config, "-a", bench.workers, "--python", sys.executable)
    if done.returncode != 0:
        raise SystemExit(done.stdout + done.stderr)
    units = len(bench.status()["units"])
    print(f"start -> all ready {time.monotonic() - began:.1f} s ({units} units)", flush=True)
    client, room, sender = steady_sender(bench, rate)
    time.sleep(3)  # a few messages before the first change: a steady state to disturb
    changes = [change(bench, "add persister3", lambda: add_persister3(bench), units + 1)]
    time.sleep(3)  # also lets the message waiting at all-ready go through before the next change
    changes.append(change(bench, "remove persister3", lambda: remove_persister3(bench), units))
    time.sleep(3)
    sender.stopping.set()
    sender.join(60)
    report(client, room, sender, changes)


def report(client: Client, room: str, sender: SteadySender, changes: list[tuple[str, float, float]],
           span: str = "edit -> all ready") -> None:
    """Each change's duration, failed requests and outage; then lost and duplicated messages."""
    for label, began, ended in changes:
        print(f"{label}: {span} {ended - began:.1f} s, "
              f"failed client requests {sender.failed_between(began, ended)}, "
              f"client could not send for {sender.outage_between(began, ended):.1f} s")
    seen = collections.Counter(t for t in client.texts(room) if t.startswith("b "))
    lost = [t for t in sender.sent if t not in seen]
    duplicated = [t for t, n in seen.items() if n > 1]
    print(f"messages sent {len(sender.sent)}, failed client requests {len(sender.failures)}, "
          f"lost {len(lost)}, duplicated {len(duplicated)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=5.0, help="messages per second")
    parser.add_argument("--synsup-path", help="a directory holding the synsup checkout to run")
    args = parser.parse_args()
    with bench_session("topo", args.synsup_path) as bench:
        run(bench, args.rate)


def steady_sender(bench: Bench, rate: float) -> tuple[Client, str, SteadySender]:
    """A user sending `rate` messages a second through generic1 into a new room."""
    main = Client(f"http://127.0.0.1:{bench.ports['main']}")
    main.register(bench.shared()["registration_shared_secret"], "bench", "bench-password")
    client = Client(f"http://127.0.0.1:{bench.ports['generic1']}")
    client.login("bench", "bench-password")
    room = client.create_room()
    sender = SteadySender(client, room, rate)
    sender.start()
    return client, room, sender


@contextlib.contextmanager
def bench_session(prefix: str, synsup_path: str | None) -> Iterator[Bench]:
    """A Bench in a temp dir with its own database; stopped and removed afterwards."""
    root = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    bench = Bench(root, synsup_path)
    demo.create_database(bench.database, DB)
    try:
        yield bench
    finally:
        bench.synsup("stop")
        demo.drop_database(bench.database, DB)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
