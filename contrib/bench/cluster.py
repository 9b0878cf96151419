"""A persister added across three hosts (three network namespaces, one etcd, one synsup each: main
and Redis on a, the persisters on b, the other workers on c) beside the same change on one host:
edit -> every unit ready (s), the etcd requests the change took (gRPC calls etcd counted, less
those of this script's own polling), and the daemons' CPU time meanwhile. With the fake Synapse
(default), or with `--synapse real`: real Synapse, Redis and a PostgreSQL cluster of the
script's own on the bridge address (tests/e2e/real_hosts.py's deployment, the one host's in the
root namespace on loopback), while a client sends through generic1 and syncs: the failed client
requests during the change, and messages lost or duplicated.

Needs root, iproute2 and Debian's etcd-server (as the three-host tests); `--synapse real` also
Synapse in this interpreter, redis-server and PostgreSQL's binaries. Prints figures; asserts
nothing. A real run takes minutes (CI's smoke run is the fake one: tests/test_benchmarks.py).

  .venv/bin/python contrib/bench/cluster.py [--repeat 3] [--synapse fake|real]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests"))

from cluster_hosts import PLACEMENT, Cluster, all_ready  # noqa: E402
from e2e.matrix import Client  # noqa: E402
from e2e.own_postgres import OwnPostgres, why_no_postgres  # noqa: E402
from e2e.real_hosts import RealFiles, real_cluster  # noqa: E402
from e2e.steady_client import SteadyClient  # noqa: E402
from etcd_server import EtcdServer  # noqa: E402
from helpers import Deployment, binary, free_ports, processes_with, wait_for, write_deployment  # noqa: E402
from network_namespaces import Network, why_no_namespaces  # noqa: E402

from synsup.supervisor.cluster.cluster_status import read_cluster_status  # noqa: E402
from synsup.supervisor.cluster.etcd_gateway import EtcdGateway  # noqa: E402
from synsup.supervisor.cluster_config import read_cluster_config  # noqa: E402

POLL = 0.05  # seconds between two looks at whether every unit is ready
RATE = 4  # the client's messages a second (--synapse real)
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def etcd_calls(etcd: EtcdServer) -> int:
    """gRPC calls etcd has started (the JSON gateway's requests are among them)."""
    with urllib.request.urlopen(f"{etcd.url}/metrics", timeout=5) as answer:
        lines = answer.read().decode().splitlines()
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("grpc_server_started_total{")))


def one_host(root: str) -> dict[str, float]:
    d = Deployment(os.path.join(root, "d"), os.path.join(root, "s"))
    try:
        done = d.start()
        assert done.returncode == 0, done.stdout + done.stderr
        daemon = [d.status()["daemon"]["pid"]]
        cpu = cpu_seconds(daemon)
        add_persister(d, "127.0.0.1")
        began = time.monotonic()
        d.write()
        wait_for(lambda: ready_with_persister3(d.status()["units"]), timeout=60, what="one host ready")
        return {"seconds": time.monotonic() - began, "cpu": cpu_seconds(daemon) - cpu, "etcd": 0}
    finally:
        d.synsup("stop", timeout=120)
        d.postgres.close()
        wait_for(lambda: not processes_with(d.control), timeout=20, what="one host's processes gone")


def add_persister(d: Deployment | RealFiles, host: str) -> None:
    port = free_ports(1)[0]
    d.shared["instance_map"]["persister3"] = {"host": host, "port": port}
    d.shared["stream_writers"]["events"].append("persister3")
    d.workers["persister3"] = {"worker_app": "synapse.app.generic_worker", "worker_name": "persister3",
                               "worker_listeners": [{"type": "http", "port": port, "bind_addresses": ["0.0.0.0"],
                                                     "resources": [{"names": ["replication"]}]}]}


def ready_with_persister3(units: list[dict[str, Any]]) -> bool:
    return "persister3" in [u["name"] for u in units] and all(u["state"] == "ready" for u in units)


def three_hosts(root: str, net: Network, etcd: EtcdServer) -> dict[str, float]:
    d = Deployment(os.path.join(root, "d"), os.path.join(root, "s"))
    cluster = Cluster(d, net, etcd)
    try:
        cluster.start_all()
        daemons = [cluster.local(node)["daemon"]["pid"] for node in PLACEMENT]
        config = read_cluster_config(cluster.file)
        look = cluster_look(config)
        per_look, _ = counted(etcd, look)
        cpu, calls = cpu_seconds(daemons), etcd_calls(etcd)
        cluster.add_persister_on_b()
        began = time.monotonic()
        for node in PLACEMENT:
            cluster.write_files(node)
        looks = until_ready(look, began, 60)
        seconds = time.monotonic() - began
        return {"seconds": seconds, "cpu": cpu_seconds(daemons) - cpu,
                "etcd": etcd_calls(etcd) - calls - looks * per_look}
    finally:
        cluster.stop()
        d.postgres.close()
        wait_for(lambda: not processes_with(d.control), timeout=20, what="the three hosts' processes gone")


def until_ready(look: Callable[[], dict[str, Any]], began: float, timeout: float) -> int:
    """Look until no plan runs and every unit, persister3 too, is ready; how many looks it took."""
    looks = 0
    while True:
        looks += 1
        report = look()
        if report["plan"] is None and all_ready(report) and ready_with_persister3(report["units"]):
            return looks
        assert time.monotonic() - began < timeout, f"three hosts not ready after {timeout} s: {report}"
        time.sleep(POLL)


def one_host_real(root: str, postgres: OwnPostgres) -> dict[str, float]:
    """The real deployment on one host (the root namespace, loopback; PostgreSQL on the bridge)."""
    files = RealFiles(root, postgres)
    state = os.path.join(root, "s")

    def synsup(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "synsup", *args, "--state-dir", state], capture_output=True,
                              text=True, env=files.env(), cwd=REPO, timeout=300)

    def units() -> list[dict[str, Any]]:
        return list(json.loads(synsup("status", "--json").stdout)["units"])

    config, workers = write_deployment(files.root, files.shared, files.workers)
    client = None
    try:
        done = synsup("start", "-c", config, "-a", workers, "--python", sys.executable)
        assert done.returncode == 0, done.stdout + done.stderr
        daemon = [json.loads(synsup("status", "--json").stdout)["daemon"]["pid"]]
        client = chatting(f"http://127.0.0.1:{files.ports['main']}", f"http://127.0.0.1:{files.ports['generic1']}",
                          files.shared["registration_shared_secret"])
        cpu = cpu_seconds(daemon)
        add_persister(files, "127.0.0.1")
        began, edited = time.monotonic(), time.time()
        write_deployment(files.root, files.shared, files.workers)
        wait_for(lambda: ready_with_persister3(units()), timeout=300, what="one host ready with persister3")
        seconds = time.monotonic() - began
        return {"seconds": seconds, "cpu": cpu_seconds(daemon) - cpu, "etcd": 0,
                **client_figures(client, edited, seconds)}
    finally:
        if client is not None:
            client.finish()
        synsup("stop")


def three_hosts_real(root: str, net: Network, etcd: EtcdServer, postgres: OwnPostgres) -> dict[str, float]:
    cluster = real_cluster(root, net, etcd, postgres)
    client = None
    try:
        cluster.start_all("--python", sys.executable, timeout=300)
        daemons = [cluster.local(node)["daemon"]["pid"] for node in cluster.nodes]
        address, ports = net.addresses, cluster.d.ports  # RealFiles
        client = chatting(f"http://{address['a']}:{ports['main']}", f"http://{address['c']}:{ports['generic1']}",
                          cluster.d.shared["registration_shared_secret"])
        look = cluster_look(read_cluster_config(cluster.file))
        per_look, _ = counted(etcd, look)
        cpu, calls = cpu_seconds(daemons), etcd_calls(etcd)
        cluster.add_persister_on_b()
        began, edited = time.monotonic(), time.time()
        for node in cluster.nodes:
            cluster.write_files(node)
        looks = until_ready(look, began, 300)
        seconds = time.monotonic() - began
        return {"seconds": seconds, "cpu": cpu_seconds(daemons) - cpu,
                "etcd": etcd_calls(etcd) - calls - looks * per_look, **client_figures(client, edited, seconds)}
    finally:
        if client is not None:
            client.finish()
        cluster.stop()
        wait_for(lambda: not any(net.pids(node) for node in cluster.nodes), timeout=60,
                 what="the three hosts' processes gone")


def chatting(main: str, generic1: str, secret: str) -> SteadyClient:
    """A user (registered on main), a room made through generic1, and a client sending and
    syncing there; back once it has sent 5 messages."""
    worker = Client(generic1)
    Client(main).register(secret, "alice", "wonderland")
    worker.login("alice", "wonderland")
    client = SteadyClient(worker, worker.create_room(), RATE).start()
    wait_for(lambda: len(client.sender.sent) >= 5, timeout=60, what="5 messages sent through generic1")
    return client


def client_figures(client: SteadyClient, edited: float, seconds: float) -> dict[str, float]:
    """The requests that failed during the change (each retried), then the room read back."""
    failed = client.failed_between(edited, edited + seconds)
    client.finish()
    lost, twice = client.lost_and_duplicated()
    return {"failed": failed, "sent": len(client.sender.sent), "lost": len(lost), "duplicated": len(twice)}


def why_no_real() -> str:
    if importlib.util.find_spec("synapse") is None:
        return f"Synapse is not installed for {sys.executable} (pip install 'matrix-synapse[postgres,redis]')"
    return "" if shutil.which("redis-server") else "redis-server is not installed"


def cluster_look(config: Any) -> Callable[[], dict[str, Any]]:
    def look() -> dict[str, Any]:
        async def read() -> dict[str, Any]:
            store = EtcdGateway.from_config(config.store)
            try:
                return await read_cluster_status(config, store)
            finally:
                await store.close()
        return asyncio.run(read())
    return look


def counted(etcd: EtcdServer, work: Callable[[], Any]) -> tuple[int, Any]:
    """The etcd calls `work` makes (nothing else may run meanwhile: measured while all is quiet)."""
    before = etcd_calls(etcd)
    result = work()
    return etcd_calls(etcd) - before, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="changes measured on each side (default 3)")
    parser.add_argument("--synapse", choices=("fake", "real"), default="fake",
                        help="the fake Synapse (default) or real Synapse, Redis and PostgreSQL")
    args = parser.parse_args()
    reason = why_no_namespaces() or ("" if shutil.which("etcd") else "etcd is not installed")
    if not reason and args.synapse == "real":
        reason = why_no_real() or why_no_postgres()
    if reason:
        sys.exit(f"cluster.py: {reason}")
    net = Network()
    etcd: EtcdServer | None = None
    postgres: OwnPostgres | None = None
    try:
        net.add_bridge()
        for node in PLACEMENT:
            net.add_host(node)
        etcd = EtcdServer(binary("etcd"), host=net.bridge_address)
        wait_for(etcd.healthy, 30, "etcd to answer /health")
        if args.synapse == "fake":
            report(measure(args.repeat, one_host), measure(args.repeat, lambda root: three_hosts(root, net, etcd)))
            return
        postgres = OwnPostgres(net.bridge_address)
        postgres.start()
        report_real(measure(args.repeat, lambda root: one_host_real(root, postgres)),
                    measure(args.repeat, lambda root: three_hosts_real(root, net, etcd, postgres)))
    finally:
        if postgres is not None:
            postgres.stop()
        if etcd is not None:
            etcd.stop()
        net.tear_down()


def measure(repeat: int, change: Callable[[str], dict[str, float]]) -> list[dict[str, float]]:
    runs = []
    for _ in range(repeat):
        root = tempfile.mkdtemp(prefix="ss", dir="/tmp")  # short: UNIX socket paths
        try:
            runs.append(change(root))
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return runs


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def report(one: list[dict[str, float]], three: list[dict[str, float]]) -> None:
    print(f"a persister added (fake Synapse), median of {len(one)} changes each:")
    print("| set-up | edit -> all ready (s) | etcd requests | daemon CPU (s, all daemons) |")
    print("|---|---|---|---|")
    print(f"| one host | {median(one, 'seconds'):.2f} | - | {median(one, 'cpu'):.2f} |")
    print(f"| three hosts (etcd) | {median(three, 'seconds'):.2f} | {median(three, 'etcd'):.0f} | "
          f"{median(three, 'cpu'):.2f} |")
    print(f"three hosts / one host: {median(three, 'seconds') / median(one, 'seconds'):.2f}x the time to all ready")


def report_real(one: list[dict[str, float]], three: list[dict[str, float]]) -> None:
    def messages(runs: list[dict[str, float]]) -> str:
        return " / ".join(f"{sum(r[key] for r in runs):.0f}" for key in ("sent", "lost", "duplicated"))
    print(f"a persister added (real Synapse, a client sending {RATE}/s through generic1 and syncing), "
          f"median of {len(one)} changes each:")
    print("| set-up | edit -> all ready (s) | failed client requests | etcd requests | daemon CPU (s, all daemons) "
          "| messages sent / lost / duplicated |")
    print("|---|---|---|---|---|---|")
    print(f"| one host | {median(one, 'seconds'):.2f} | {median(one, 'failed'):.0f} | - | {median(one, 'cpu'):.2f} "
          f"| {messages(one)} |")
    print(f"| three hosts (etcd) | {median(three, 'seconds'):.2f} | {median(three, 'failed'):.0f} | "
          f"{median(three, 'etcd'):.0f} | {median(three, 'cpu'):.2f} | {messages(three)} |")
    print(f"three hosts / one host: {median(three, 'seconds') / median(one, 'seconds'):.2f}x the time to all ready")


if __name__ == "__main__":
    main()
