"""A real etcd for the store tests: Debian's etcd-server, one member on loopback ports below
32768, its data on tmpfs (/dev/shm) when there is one; stopped and its data removed afterwards.
`EtcdCluster`: three members on one address, for the quorum cases (members stopped and started
again one by one).
Skipped off CI when etcd is not installed (helpers.binary fails under CI=true)."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator

from helpers import binary, free_ports, wait_for


class EtcdServer:
    def __init__(self, etcd: str, *options: str, tls: dict[str, str] | None = None, host: str = "127.0.0.1") -> None:
        """`tls` (from `certificates`): clients on https with a certificate signed by its CA; `host`:
        the address it listens on (another than loopback for nodes in network namespaces)."""
        self.client_port, self.peer_port = free_ports(2)
        tmpfs = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        self.data = tempfile.mkdtemp(prefix="synsup-etcd-", dir=tmpfs)
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://{host}:{self.client_port}"
        if tls:
            options += ("--cert-file", tls["server_cert"], "--key-file", tls["server_key"],
                        "--trusted-ca-file", tls["ca"], "--client-cert-auth")
        peer = f"http://{host}:{self.peer_port}"
        self.log = open(os.path.join(self.data, "etcd.log"), "wb")  # closed in stop()
        self.process = subprocess.Popen(
            [etcd, "--name", "test", "--data-dir", os.path.join(self.data, "member"),
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"test={peer}", "--initial-cluster-state", "new",
             "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn", *options],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def urls(self) -> list[str]:
        return [self.url]

    def healthy(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"etcd exited {self.process.returncode}: {self.log_text()[-2000:]}")
        context = None
        if self.tls:
            context = ssl.create_default_context(cafile=self.tls["ca"])
            context.load_cert_chain(self.tls["cert"], self.tls["key"])
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1, context=context) as answer:
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


def running_etcd(*options: str, tls: dict[str, str] | None = None, host: str = "127.0.0.1") -> Iterator[EtcdServer]:
    """For a fixture: `yield from running_etcd()`."""
    server = EtcdServer(binary("etcd"), *options, tls=tls, host=host)
    try:
        wait_for(server.healthy, 30, "etcd to answer /health")
        yield server
    finally:
        server.stop()


def certificates(directory: str) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made by openssl."""
    openssl = binary("openssl")
    paths = {name: os.path.join(directory, f"{name}.pem") for name in
             ("ca", "ca_key", "server_cert", "server_key", "cert", "key")}
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    subprocess.run([openssl, "req", "-x509", *key, "-keyout", paths["ca_key"], "-out", paths["ca"], "-days", "1",
                    "-subj", "/CN=synsup test CA"], check=True, capture_output=True)
    for cert, own_key, name, extension in (("server_cert", "server_key", "127.0.0.1", "subjectAltName=IP:127.0.0.1"),
                                           ("cert", "key", "synsup", "extendedKeyUsage=clientAuth")):
        request = os.path.join(directory, f"{name}.csr")
        extfile = os.path.join(directory, f"{name}.ext")
        with open(extfile, "w") as f:
            f.write(extension + "\n")
        subprocess.run([openssl, "req", *key, "-keyout", paths[own_key], "-out", request, "-subj", f"/CN={name}"],
                       check=True, capture_output=True)
        subprocess.run([openssl, "x509", "-req", "-in", request, "-CA", paths["ca"], "-CAkey", paths["ca_key"],
                        "-CAcreateserial", "-out", paths[cert], "-days", "1", "-extfile", extfile],
                       check=True, capture_output=True)
    return paths


class EtcdCluster:
    """`size` etcd members on `host`, each with its own ports and data dir (one tmp dir)."""

    def __init__(self, etcd: str, host: str = "127.0.0.1", size: int = 3) -> None:
        self.etcd, self.host = etcd, host
        ports = free_ports(2 * size)
        self.names = [f"m{i}" for i in range(size)]
        self.client = {n: f"http://{host}:{ports[2 * i]}" for i, n in enumerate(self.names)}
        self.peer = {n: f"http://{host}:{ports[2 * i + 1]}" for i, n in enumerate(self.names)}
        tmpfs = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        self.data = tempfile.mkdtemp(prefix="synsup-etcd-", dir=tmpfs)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        for name in self.names:
            self.start_member(name)

    @property
    def urls(self) -> list[str]:
        return [self.client[n] for n in self.names]

    def start_member(self, name: str) -> None:
        """Started (again: its data dir keeps its membership)."""
        initial = ",".join(f"{n}={self.peer[n]}" for n in self.names)
        with open(os.path.join(self.data, f"{name}.log"), "ab") as log:
            self.processes[name] = subprocess.Popen(
                [self.etcd, "--name", name, "--data-dir", os.path.join(self.data, name),
                 "--listen-client-urls", self.client[name], "--advertise-client-urls", self.client[name],
                 "--listen-peer-urls", self.peer[name], "--initial-advertise-peer-urls", self.peer[name],
                 "--initial-cluster", initial, "--initial-cluster-state", "new", "--initial-cluster-token",
                 os.path.basename(self.data), "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop_member(self, name: str) -> None:
        process = self.processes[name]
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def healthy(self) -> bool:
        """Every running member answers /health with true (a quorum and a leader)."""
        def answers(url: str) -> bool:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1) as answer:
                    return bool(json.load(answer).get("health") == "true")
            except OSError:
                return False
        return all(answers(self.client[n]) for n, p in self.processes.items() if p.poll() is None)

    def stop(self) -> None:
        for name in self.names:
            self.stop_member(name)
        shutil.rmtree(self.data, ignore_errors=True)


def running_etcd_cluster(host: str = "127.0.0.1") -> Iterator[EtcdCluster]:
    """For a fixture: `yield from running_etcd_cluster(host)`."""
    cluster = EtcdCluster(binary("etcd"), host)
    try:
        wait_for(cluster.healthy, 30, "the three etcd members to answer /health")
        yield cluster
    finally:
        cluster.stop()
