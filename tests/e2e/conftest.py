"""Real Synapse, PostgreSQL and Redis. Skips with the reason on a developer machine that lacks
them; in CI (CI=true) a missing part fails instead, since .ci/run installs all of them."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime

import psutil
import pytest
import yaml
from helpers import REPO, free_ports, wait_for

sys.path.insert(0, os.path.join(REPO, "contrib", "demo"))
import deployment as demo

DB = {"user": "synsup", "password": "synsup"}  # contrib/test.sh creates this role


def _missing() -> str | None:
    if importlib.util.find_spec("synapse") is None:
        return f"Synapse is not installed for {sys.executable} (pip install 'matrix-synapse[postgres,redis]')"
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (apt-get install redis-server)"
    try:
        import psycopg2
        psycopg2.connect(host="127.0.0.1", dbname="postgres", **DB).close()
    except Exception as e:
        return f"PostgreSQL role synsup on 127.0.0.1 unusable ({str(e).strip()}); run contrib/postgres.sh synsup synsup"
    return None


def all_ready(real: RealDeployment) -> bool:
    units = real.status()["units"]
    return bool(units) and all(u["state"] == "ready" for u in units)


class RealDeployment:
    def __init__(self, root: str, metrics: bool = False) -> None:
        self.root = root
        self.state_dir = os.path.join(root, "s")
        self.dir = os.path.join(root, "d")
        os.makedirs(self.dir)
        names = ["main", "replication", "persister1", "persister2", "generic1", "redis", "persister3"]
        names += [f"metrics_{p}" for p in demo.PROCESSES] if metrics else []  # with metrics listeners
        self.ports = dict(zip(names, free_ports(len(names))))
        self.database = f"synsup_e2e_{os.getpid()}" + ("_metrics" if metrics else "")
        self.config, self.workers_dir = demo.write(self.dir, sys.executable, {**DB, "database": self.database},
                                                   self.ports)

    def synsup(self, *args: str, config: bool = False, timeout: float = 600):
        extra = ["-c", self.config, "-a", self.workers_dir, "--python", sys.executable] if config else []
        return subprocess.run([sys.executable, "-m", "synsup", *args, "--state-dir", self.state_dir, *extra],
                              capture_output=True, text=True, timeout=timeout, cwd=REPO)

    def status(self) -> dict:
        return json.loads(self.synsup("status", "--json").stdout)

    def pids(self) -> dict[str, int]:
        return {u["name"]: u["pid"] for u in self.status()["units"]}

    def shared(self) -> dict:
        with open(self.config) as f:
            return yaml.safe_load(f)

    def write_shared(self, config: dict) -> None:
        with open(self.config, "w") as f:
            yaml.safe_dump(config, f, sort_keys=False)

    def write_worker(self, name: str, doc: dict | str) -> None:
        with open(os.path.join(self.workers_dir, f"{name}.yaml"), "w") as f:
            f.write(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))

    def add_persister3(self) -> None:
        """A third event persister, by editing the files as an admin would; back once all are ready."""
        shared = self.shared()
        shared["instance_map"]["persister3"] = {"host": "127.0.0.1", "port": self.ports["persister3"]}
        shared["stream_writers"]["events"].append("persister3")
        self.write_shared(shared)  # rejected alone (persister3 is no process yet), applied with the worker file
        self.write_worker("persister3", {
            "worker_app": "synapse.app.generic_worker", "worker_name": "persister3",
            "worker_log_config": shared["log_config"],
            "worker_listeners": [{"type": "http", "port": self.ports["persister3"], "bind_addresses": ["127.0.0.1"],
                                  "resources": [{"names": ["replication"]}]}]})
        wait_for(lambda: "persister3" in self.pids() and all_ready(self) and
                 self.status()["daemon"]["reload_error"] is None, timeout=300, what="persister3 added, all ready")

    def daemon_events(self, since: float) -> list[dict]:
        """synsup's own log (JSON lines): unit.spawned / unit.stopped with their times."""
        return [e for e in daemon_log(os.path.join(self.state_dir, "daemon.log")) if e["t"] >= since]

    def leftovers(self) -> list[psutil.Process]:
        """Synapse processes of this deployment and its redis-server, if any still run."""
        found = []
        for proc in psutil.process_iter(["name", "cmdline"]):
            try:
                if self.dir in " ".join(proc.info["cmdline"] or []) or (
                        proc.info["name"] == "redis-server" and
                        any(c.laddr.port == self.ports["redis"] for c in proc.net_connections("inet"))):
                    found.append(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return found


def daemon_log(path: str) -> list[dict]:
    """A daemon.log's events (JSON lines), each with its time as `t` (seconds since the epoch)."""
    events = []
    with open(path) as f:
        for line in f:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            event["t"] = datetime.fromisoformat(event["timestamp"]).timestamp()
            events.append(event)
    return events


def skip_or_fail(missing: str | None) -> None:
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"end-to-end prerequisites missing in CI: {missing}")
        pytest.skip(missing)


@pytest.fixture(scope="module")
def real():
    yield from real_deployment()


def real_deployment(metrics: bool = False):
    skip_or_fail(_missing())
    root = tempfile.mkdtemp(prefix="se", dir="/tmp")
    d = RealDeployment(root, metrics)
    demo.create_database(d.database, DB)
    try:
        yield d
    finally:
        d.synsup("stop")
        for proc in d.leftovers():
            proc.kill()
        demo.drop_database(d.database, DB)
        shutil.rmtree(root, ignore_errors=True)
