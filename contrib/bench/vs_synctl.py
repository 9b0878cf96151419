"""Start-to-all-ready of the demo-shaped deployment: synsup against `synctl start -a`.

Needs real Synapse in this interpreter and PostgreSQL with role synsup/synsup (as
contrib/test.sh sets up). Prints figures; asserts nothing.

  .venv/bin/python contrib/bench/vs_synctl.py
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "contrib", "demo"))
sys.path.insert(0, os.path.join(REPO, "tests"))

import deployment as demo  # noqa: E402
from helpers import free_ports  # noqa: E402

DB = {"user": "synsup", "password": "synsup"}


def healthy(ports: list[int]) -> bool:
    for port in ports:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status != 200:
                    return False
        except OSError:
            return False
    return True


def synsup(state: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "synsup", *args, "--state-dir", state], cwd=REPO,
                          capture_output=True, text=True)


def time_synsup(config: str, workers: str, state: str) -> float:
    began = time.monotonic()
    done = synsup(state, "start", "-c", config, "-a", workers, "--python", sys.executable)
    took = time.monotonic() - began
    if done.returncode != 0:
        raise SystemExit(done.stdout + done.stderr)
    synsup(state, "stop")
    return took


def synctl_copy(directory: str, config: str, workers: str) -> tuple[str, str]:
    """synctl needs daemonize and pid files: its own copy of the config."""
    copy = os.path.join(directory, "synctl")
    shutil.copytree(os.path.dirname(config), copy, ignore=shutil.ignore_patterns("state", "synctl"))
    with open(os.path.join(copy, "homeserver.yaml")) as f:
        shared = yaml.safe_load(f)
    shared.update(daemonize=True, pid_file=os.path.join(copy, "main.pid"))
    with open(os.path.join(copy, "homeserver.yaml"), "w") as f:
        yaml.safe_dump(shared, f)
    for name in os.listdir(os.path.join(copy, "workers")):
        path = os.path.join(copy, "workers", name)
        with open(path) as f:
            doc = yaml.safe_load(f)
        doc.update(worker_daemonize=True, worker_pid_file=os.path.join(copy, f"{doc['worker_name']}.pid"))
        with open(path, "w") as f:
            yaml.safe_dump(doc, f)
    with open(os.path.join(copy, "workers", "main.yaml"), "w") as f:
        f.write("worker_app: synapse.app.homeserver\n")  # how synctl -a learns to start main
    return os.path.join(copy, "homeserver.yaml"), os.path.join(copy, "workers")


def time_synctl(config: str, workers: str, redis_port: int, http_ports: list[int]) -> tuple[float, float]:
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""],
                             stdout=subprocess.DEVNULL)
    synctl = os.path.join(os.path.dirname(sys.executable), "synctl")
    try:
        began = time.monotonic()
        subprocess.run([synctl, "start", config, "-a", workers], check=True, capture_output=True,
                       cwd=os.path.dirname(config))
        returned = time.monotonic() - began
        while not healthy(http_ports):
            if time.monotonic() - began > 300:
                raise SystemExit("synctl's deployment did not become healthy within 300 s")
            time.sleep(0.05)
        return returned, time.monotonic() - began
    finally:
        subprocess.run([synctl, "stop", config, "-a", workers], capture_output=True, cwd=os.path.dirname(config))
        redis.send_signal(signal.SIGTERM)
        redis.wait()


def main() -> None:
    root = tempfile.mkdtemp(prefix="vs", dir="/tmp")
    database = f"synsup_vs_{os.getpid()}"
    ports = dict(zip(["main", "replication", "persister1", "persister2", "generic1", "redis"], free_ports(6)))
    demo.create_database(database, DB)
    try:
        config, workers = demo.write(os.path.join(root, "d"), sys.executable, {**DB, "database": database}, ports)
        state = os.path.join(root, "s")
        fresh = time_synsup(config, workers, state)
        migrated = [time_synsup(config, workers, state) for _ in range(3)]
        copy, copy_workers = synctl_copy(root, config, workers)
        http = [ports[n] for n in ("main", "replication", "persister1", "persister2", "generic1")]
        synctl = [time_synctl(copy, copy_workers, ports["redis"], http) for _ in range(3)]
    finally:
        demo.drop_database(database, DB)
        shutil.rmtree(root, ignore_errors=True)
    print(f"synsup start, empty database (migrations):  {fresh:.2f} s to all ready (8 units)")
    print(f"synsup start, migrated database:           {', '.join(f'{t:.2f}' for t in migrated)} s")
    print("synctl start -a, migrated database:         "
          + ", ".join(f"{r:.2f} s returned / {h:.2f} s all /health 200" for r, h in synctl))
    print("(synctl does not wait for readiness, and not for stream writers before other workers)")


if __name__ == "__main__":
    main()
