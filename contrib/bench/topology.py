"""Restarting and killing (SIGKILL) a generic worker, then adding and removing an event
persister, while a client sends messages at a steady rate and syncs (real Synapse, PostgreSQL,
Redis): straight at generic1, or with --proxy through HAProxy or nginx (started here on a
loopback port with the config `synsup routes` prints, synsup started with --proxy; event
sending, sync and client reads routed to generic1, main the backup). Prints, per change: its
time, failed client requests, the longest stall (a message's first try to its success), the
seconds the client could not send; at the end lost and duplicated messages.

Needs real Synapse in this interpreter and PostgreSQL with role synsup/synsup (as
contrib/test.sh sets up), and haproxy or nginx for --proxy. Prints figures; asserts nothing.

  .venv/bin/python contrib/bench/topology.py [--rate 5] [--proxy haproxy|nginx|none] [--synsup-path DIR]

--synsup-path runs another synsup: a directory holding a `synsup/` checkout (e.g. a git
worktree of an older commit), put first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "contrib", "demo"))
sys.path.insert(0, os.path.join(REPO, "tests"))

import deployment as demo  # noqa: E402
import yaml  # noqa: E402
from e2e.front_doors import FrontDoor, front_door  # noqa: E402
from e2e.matrix import Client  # noqa: E402
from e2e.steady_client import SteadyClient  # noqa: E402
from helpers import free_ports  # noqa: E402

DB = {"user": "synsup", "password": "synsup"}
PROXIES = ("none", "haproxy", "nginx")


class Bench:
    def __init__(self, root: str, synsup_path: str | None, proxy: str = "none") -> None:
        self.root, self.state, self.proxy = root, os.path.join(root, "s"), proxy
        self.door: FrontDoor | None = None
        self.ports = dict(zip(["main", "replication", "persister1", "persister2", "generic1", "redis",
                               "persister3"], free_ports(7)))
        self.database = f"synsup_topology_{os.getpid()}"
        self.config, self.workers = demo.write(os.path.join(root, "d"), sys.executable,
                                               {**DB, "database": self.database}, self.ports)
        self.env = {**os.environ}
        if synsup_path:
            self.env["PYTHONPATH"] = synsup_path

    def start(self, python: str) -> None:
        """The front door first (--proxy), then `synsup start` on `python`; exits if it fails."""
        if self.proxy != "none":
            self.door = front_door(self.proxy, os.path.join(self.root, "p"), self.config, self.workers, python)
        done = self.synsup("start", "-c", self.config, "-a", self.workers, "--python", python,
                           *(self.door.start_args if self.door else []))
        if done.returncode != 0:
            raise SystemExit(done.stdout + done.stderr)

    def client_url(self) -> str:
        """Where the client goes: the proxy, or generic1 itself."""
        return f"http://127.0.0.1:{self.door.port if self.door else self.ports['generic1']}"

    def synsup(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "synsup", *args, "--state-dir", self.state],
                              capture_output=True, text=True, env=self.env, cwd="/")

    def status(self) -> dict:
        return json.loads(self.synsup("status", "--json").stdout)

    def pids(self) -> dict[str, int]:
        return {u["name"]: u["pid"] for u in self.status()["units"]}

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


def restarted(bench: Bench) -> tuple[str, float, float]:
    began = time.time()
    done = bench.synsup("restart", "generic1")
    if done.returncode != 0:
        raise SystemExit(f"synsup restart generic1 failed:\n{done.stdout}{done.stderr}")
    return "synsup restart generic1: took", began, time.time()


def killed(bench: Bench) -> tuple[str, float, float]:
    """kill -9 generic1, until it is back and ready (and ready in the proxy, if it drains)."""
    pid = bench.pids()["generic1"]
    began = time.time()
    os.kill(pid, signal.SIGKILL)
    wait(lambda: (units := bench.status()["units"]) and all(u["state"] == "ready" for u in units) and any(
        u["name"] == "generic1" and u["pid"] not in (None, pid) and u.get("proxy") in (None, "ready", "absent")
        for u in units))
    return "kill -9 generic1: kill -> back and ready", began, time.time()


def run(bench: Bench, rate: float) -> None:
    began = time.monotonic()
    bench.start(sys.executable)
    units = len(bench.status()["units"])
    print(f"start -> all ready {time.monotonic() - began:.1f} s ({units} units), proxy {bench.proxy}", flush=True)
    steady = steady_client(bench, rate)
    time.sleep(3)  # a few messages before the first change: a steady state to disturb
    changes = [restarted(bench)]
    time.sleep(3)  # also lets the message waiting at all-ready go through before the next change
    changes.append(killed(bench))
    time.sleep(3)
    changes.append(change(bench, "add persister3: edit -> all ready", lambda: add_persister3(bench), units + 1))
    time.sleep(3)
    changes.append(change(bench, "remove persister3: edit -> all ready", lambda: remove_persister3(bench), units))
    time.sleep(3)
    steady.finish()
    report(steady, changes)


def report(steady: SteadyClient, changes: list[tuple[str, float, float]]) -> None:
    """Each change's duration, failed requests, longest stall and outage; then lost and duplicated messages.
    A change's label says what its duration spans ("add persister3: edit -> all ready")."""
    sender = steady.sender
    for label, began, ended in changes:
        print(f"{label} {ended - began:.1f} s, "
              f"failed client requests {steady.failed_between(began, ended)}, "
              f"longest stall {sender.stall_between(began, ended):.1f} s, "
              f"client could not send for {sender.outage_between(began, ended):.1f} s")
    lost, duplicated = steady.lost_and_duplicated()
    print(f"messages sent {len(sender.sent)}, failed client requests {len(steady.failures)}, "
          f"lost {len(lost)}, duplicated {len(duplicated)}")
    for error in sorted(set(steady.errors))[:10]:
        print(f"  failed: {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=5.0, help="messages per second")
    parser.add_argument("--proxy", choices=PROXIES, default="none",
                        help="the client's way in: HAProxy or nginx in front (synsup start --proxy), or none")
    parser.add_argument("--synsup-path", help="a directory holding the synsup checkout to run")
    args = parser.parse_args()
    with bench_session("topo", args.synsup_path, args.proxy) as bench:
        run(bench, args.rate)


def steady_client(bench: Bench, rate: float) -> SteadyClient:
    """A user sending `rate` messages a second into a new room, and syncing, through the proxy or generic1."""
    main = Client(f"http://127.0.0.1:{bench.ports['main']}")
    main.register(bench.shared()["registration_shared_secret"], "bench", "bench-password")
    client = Client(bench.client_url())
    wait(lambda: answers(client), timeout=60)
    client.login("bench", "bench-password")
    return SteadyClient(client, client.create_room(), rate).start()


def answers(client: Client) -> bool:
    try:
        return client.request("GET", "/_matrix/client/versions", timeout=5)[0] == 200
    except OSError:
        return False


@contextlib.contextmanager
def bench_session(prefix: str, synsup_path: str | None, proxy: str = "none") -> Iterator[Bench]:
    """A Bench in a temp dir with its own database; stopped (and its proxy) and removed afterwards."""
    root = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    bench = Bench(root, synsup_path, proxy)
    demo.create_database(bench.database, DB)
    try:
        yield bench
    finally:
        bench.synsup("stop")
        if bench.door is not None:
            bench.door.stop()
        demo.drop_database(bench.database, DB)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
