"""Shared test helpers: building deployments on disk, finding free ports, polling."""

from __future__ import annotations

import asyncio
import copy
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE_SYNAPSE = os.path.join(HERE, "fake")
REPO = os.path.dirname(HERE)


def alive(pid: int) -> bool:
    """The process exists and is no zombie."""
    import psutil
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def free_ports(n: int) -> list[int]:
    """Ports that bind now, below the kernel's ephemeral range (32768+), so that no outgoing
    connection (a probe's, a client's) takes one of them between now and the server's bind."""
    import random
    ports: list[int] = []
    for port in random.sample(range(20000, 32000), 12000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == n:
            return ports
    raise RuntimeError(f"no {n} free ports in 20000-32000")


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll until `condition()` is truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def listener(port: int, *names: str) -> dict[str, Any]:
    return {"type": "http", "port": port, "bind_addresses": ["127.0.0.1"], "resources": [{"names": list(names)}]}


def worker(name: str, *listeners: dict, app: str = "synapse.app.generic_worker", **extra: Any) -> dict[str, Any]:
    doc = {"worker_app": app, "worker_name": name}
    if listeners:
        doc["worker_listeners"] = list(listeners)
    doc.update(extra)
    return doc


def modern_deployment(ports: list[int] | None = None) -> tuple[dict, dict[str, dict]]:
    """main (client + replication), Redis, two event persisters, a generic worker, a
    federation sender and a pusher, in today's dialect (instance_map.main)."""
    p = ports or [8008, 9093, 9101, 9102, 8081, 6379]
    shared = {
        "server_name": "example.org",
        "listeners": [listener(p[0], "client", "federation"), listener(p[1], "replication")],
        "database": {"name": "psycopg2", "args": {"database": "synapse"}},
        "redis": {"enabled": True, "host": "127.0.0.1", "port": p[5]},
        "worker_replication_secret": "secret",
        "instance_map": {
            "main": {"host": "127.0.0.1", "port": p[1]},
            "persister1": {"host": "127.0.0.1", "port": p[2]},
            "persister2": {"host": "127.0.0.1", "port": p[3]},
        },
        "stream_writers": {"events": ["persister1", "persister2"]},
        "federation_sender_instances": ["sender1"],
        "pusher_instances": ["pusher1"],
    }
    workers = {
        "persister1": worker("persister1", listener(p[2], "replication")),
        "persister2": worker("persister2", listener(p[3], "replication")),
        "generic1": worker("generic1", listener(p[4], "client", "federation")),
        "sender1": worker("sender1"),
        "pusher1": worker("pusher1"),
    }
    return shared, workers


def legacy_deployment() -> tuple[dict, dict[str, dict]]:
    """The same in the v1.66 dialect: worker_replication_host/port in every worker file."""
    shared, workers = modern_deployment()
    del shared["instance_map"]["main"]
    for doc in workers.values():
        doc["worker_replication_host"] = "127.0.0.1"
        doc["worker_replication_http_port"] = 9093
    return shared, workers


def write_deployment(directory: str, shared: dict, workers: dict[str, dict]) -> tuple[str, str]:
    """Write homeserver.yaml and workers/<name>.yaml; return (config path, worker dir)."""
    os.makedirs(os.path.join(directory, "workers"), exist_ok=True)
    config = os.path.join(directory, "homeserver.yaml")
    with open(config, "w") as f:
        yaml.safe_dump(shared, f, sort_keys=False)
    for name, doc in workers.items():
        with open(os.path.join(directory, "workers", f"{name}.yaml"), "w") as f:
            yaml.safe_dump(doc, f, sort_keys=False)
    return config, os.path.join(directory, "workers")


def fake_postgres(directory: str, port: int = 5432) -> socket.socket:
    """A listening UNIX socket where libpq looks for PostgreSQL (`<dir>/.s.PGSQL.<port>`): the
    postgres unit's connect probe answers; nothing ever accepts. Close it to take it "down"."""
    os.makedirs(directory, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(os.path.join(directory, f".s.PGSQL.{port}"))
    sock.listen(1024)
    return sock


def deep(value: Any) -> Any:
    return copy.deepcopy(value)


class Deployment:
    """A fake-Synapse deployment on free ports, driven through the synsup CLI."""

    def __init__(self, root: str, state_dir: str) -> None:
        self.root, self.state_dir = root, state_dir
        self.control = os.path.join(root, "control")
        os.makedirs(self.control, exist_ok=True)
        ports = free_ports(6)
        self.shared, self.workers = modern_deployment(ports)
        self.ports = ports
        self.postgres = fake_postgres(os.path.join(root, "pg"))
        self.shared["database"]["args"]["host"] = os.path.join(root, "pg")
        self.write()

    def write(self) -> None:
        self.config, self.workers_dir = write_deployment(self.root, self.shared, self.workers)

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": FAKE_SYNAPSE, "SYNAPSE_FAKE_CONTROL": self.control}

    def synsup(self, *args: str, config: bool = False, timeout: float = 120):
        import subprocess
        import sys
        extra = ["-c", self.config, "-a", self.workers_dir] if config else []
        return subprocess.run([sys.executable, "-m", "synsup", *args, "--state-dir", self.state_dir, *extra],
                              capture_output=True, text=True, env=self.env(), timeout=timeout, cwd=REPO)

    def start(self):
        return self.synsup("start", config=True)

    def status(self) -> dict:
        import json
        done = self.synsup("status", "--json")
        return json.loads(done.stdout)

    def unit(self, name: str) -> dict:
        return next(u for u in self.status()["units"] if u["name"] == name)

    def pids(self) -> dict[str, int]:
        """Unit name -> pid, of the units that have a process."""
        return {u["name"]: u["pid"] for u in self.status()["units"] if u["pid"]}

    def behave(self, name: str, **behaviour: Any) -> None:
        import json
        with open(os.path.join(self.control, f"{name}.json"), "w") as f:
            json.dump(behaviour, f)

    def events(self) -> list[dict]:
        import json
        try:
            with open(os.path.join(self.control, "events.jsonl")) as f:
                return [json.loads(line) for line in f]
        except FileNotFoundError:
            return []


def processes_with(marker: str) -> list[int]:
    """Pids of live processes whose environment holds `marker` (a test's own directory)."""
    import psutil
    found = []
    for proc in psutil.process_iter(["pid", "environ", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if any(marker in v for v in (proc.info["environ"] or {}).values()):
                found.append(proc.info["pid"])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def binary(name: str) -> str:
    """The path of a program a test needs (haproxy, nginx); skipped off CI when missing, as e2e does."""
    for directory in ("/usr/sbin", "/usr/bin", *os.environ.get("PATH", "").split(os.pathsep)):
        if os.access(os.path.join(directory, name), os.X_OK):
            return os.path.join(directory, name)
    if os.environ.get("CI"):
        pytest.fail(f"{name} is missing in CI (contrib/debian-packages.sh installs it)")
    pytest.skip(f"{name} is not installed")


def read_text(path: str) -> str:
    """A file's text, closed at once (an unclosed file is a ResourceWarning, an error in CI)."""
    with open(path) as f:
        return f.read()


async def supervised(sup: Any, scenario: Callable[[Any], Any], timeout: float = 30.0) -> None:
    """`scenario(sup)` with every unit of Supervisor `sup` started; every unit stopped, the
    tasks gone and the supervisor closed after, whatever happened."""
    async with asyncio.TaskGroup() as group:
        sup.spawn_tasks(group)
        try:
            sup.start_all()
            await asyncio.wait_for(scenario(sup), timeout)
        finally:
            await sup.stop_all()
            sup.cancel_tasks()
    sup.close()


async def until(predicate: Callable[[], Any], what: str, timeout: float = 10.0) -> None:
    """Poll `predicate` on the running loop until it holds; fails naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.005)


def gone(pid: int) -> bool:
    """Dead and reaped (the daemon's reaper reaps what a unit's process left; psutil sees zombies)."""
    import psutil

    from synsup.supervisor.engine.process import REAPER
    REAPER.reap()
    return not psutil.pid_exists(pid)

