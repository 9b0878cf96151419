"""A real etcd for the store tests: Debian's etcd-server, one member on loopback ports below
32768, its data on tmpfs (/dev/shm) when there is one; stopped and its data removed afterwards.
Skipped off CI when etcd is not installed (helpers.binary fails under CI=true)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator

from helpers import binary, free_ports, wait_for


class EtcdServer:
    def __init__(self, etcd: str) -> None:
        self.client_port, self.peer_port = free_ports(2)
        tmpfs = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        self.data = tempfile.mkdtemp(prefix="synsup-etcd-", dir=tmpfs)
        self.url = f"http://127.0.0.1:{self.client_port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        self.log = open(os.path.join(self.data, "etcd.log"), "wb")  # closed in stop()
        self.process = subprocess.Popen(
            [etcd, "--name", "test", "--data-dir", os.path.join(self.data, "member"),
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"test={peer}", "--initial-cluster-state", "new",
             "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def healthy(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"etcd exited {self.process.returncode}: {self.log_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as answer:
                return bool(json.load(answer).get("health") == "true")
        except OSError:
            return False

    def log_text(self) -> str:
        with open(os.path.join(self.data, "etcd.log"), errors="replace") as f:
            return f.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        shutil.rmtree(self.data, ignore_errors=True)


def running_etcd() -> Iterator[EtcdServer]:
    """For a fixture: `yield from running_etcd()`."""
    server = EtcdServer(binary("etcd"))
    try:
        wait_for(server.healthy, 30, "etcd to answer /health")
        yield server
    finally:
        server.stop()
