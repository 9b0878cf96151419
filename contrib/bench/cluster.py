"""A persister added across three hosts (three network namespaces, one etcd, one synsup each, the
fake Synapse: main and Redis on a, the persisters on b, the other workers on c) beside the same
change on one host: edit -> every unit ready (s), the etcd requests the change took (gRPC calls
etcd counted, less those of this script's own polling), and the daemons' CPU time meanwhile.

Needs root, iproute2 and Debian's etcd-server (as the three-host tests). Prints figures; asserts
nothing.

  .venv/bin/python contrib/bench/cluster.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
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
from etcd_server import EtcdServer  # noqa: E402
from helpers import Deployment, binary, free_ports, processes_with, wait_for  # noqa: E402
from network_namespaces import Network, why_no_namespaces  # noqa: E402

from synsup.supervisor.cluster.cluster_status import read_cluster_status  # noqa: E402
from synsup.supervisor.cluster.etcd_gateway import EtcdGateway  # noqa: E402
from synsup.supervisor.cluster_config import read_cluster_config  # noqa: E402

POLL = 0.05  # seconds between two looks at whether every unit is ready
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


def add_persister(d: Deployment, host: str) -> None:
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
        looks = 0
        while True:
            looks += 1
            report = look()
            if report["plan"] is None and all_ready(report) and ready_with_persister3(report["units"]):
                break
            assert time.monotonic() - began < 60, f"three hosts not ready after 60 s: {report}"
            time.sleep(POLL)
        seconds = time.monotonic() - began
        return {"seconds": seconds, "cpu": cpu_seconds(daemons) - cpu,
                "etcd": etcd_calls(etcd) - calls - looks * per_look}
    finally:
        cluster.stop()
        d.postgres.close()
        wait_for(lambda: not processes_with(d.control), timeout=20, what="the three hosts' processes gone")


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
    args = parser.parse_args()
    reason = why_no_namespaces() or ("" if shutil.which("etcd") else "etcd is not installed")
    if reason:
        sys.exit(f"cluster.py: {reason}")
    net = Network()
    etcd: EtcdServer | None = None
    try:
        net.add_bridge()
        for node in PLACEMENT:
            net.add_host(node)
        etcd = EtcdServer(binary("etcd"), host=net.bridge_address)
        wait_for(etcd.healthy, 30, "etcd to answer /health")
        report(measure(args.repeat, one_host), measure(args.repeat, lambda root: three_hosts(root, net, etcd)))
    finally:
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


def report(one: list[dict[str, float]], three: list[dict[str, float]]) -> None:
    def median(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in runs)
    print(f"a persister added (fake Synapse), median of {len(one)} changes each:")
    print("| set-up | edit -> all ready (s) | etcd requests | daemon CPU (s, all daemons) |")
    print("|---|---|---|---|")
    print(f"| one host | {median(one, 'seconds'):.2f} | - | {median(one, 'cpu'):.2f} |")
    print(f"| three hosts (etcd) | {median(three, 'seconds'):.2f} | {median(three, 'etcd'):.0f} | "
          f"{median(three, 'cpu'):.2f} |")
    print(f"three hosts / one host: {median(three, 'seconds') / median(one, 'seconds'):.2f}x the time to all ready")


if __name__ == "__main__":
    main()
