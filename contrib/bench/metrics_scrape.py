"""What a Prometheus scrape of synsup's /metrics costs the daemon, with 500 running units.

  python contrib/bench/metrics_scrape.py [--units 500] [--scrapes 50]

The units are bench.py's C fake units (real processes, so psutil reads real process trees),
each with an HTTP /health probe checked every 10 s, as Synapse processes have.
The daemon side (the Supervisor, the collector, the asyncio HTTP handler) runs in this
process; a separate client process scrapes /metrics and /targets, and the figure is this
process's CPU time (user + system) over the scrapes divided by their number, the liveness
probes' own CPU (measured without scrapes) taken off. Target: < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from types import SimpleNamespace

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench import free_ports, unit_spec, with_supervisor  # noqa: E402

from synsup.supervisor.daemon.daemon_log import configure  # noqa: E402
from synsup.supervisor.daemon.metrics_server import MetricsAddress  # noqa: E402
from synsup.supervisor.daemon.telemetry import Telemetry  # noqa: E402
from synsup.supervisor.source import Loaded  # noqa: E402

CLIENT = """
import sys, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
size = 0
for _ in range(n):
    with urllib.request.urlopen(url, timeout=30) as r:
        size = len(r.read())
print(size)
"""


async def cpu_per_request(url: str, count: int) -> tuple[float, int]:
    """This process's CPU seconds per request while a client process makes `count` requests."""
    before = time.process_time()
    client = await asyncio.create_subprocess_exec(sys.executable, "-c", CLIENT, url, str(count),
                                                  stdout=asyncio.subprocess.PIPE)
    out, _ = await client.communicate()
    return (time.process_time() - before) / count, int(out or 0)


async def cold_scrape(base: str, sup) -> float:
    """CPU of a scrape that follows a unit change, which renders the unit-event families again."""
    total = 0.0
    for _ in range(5):
        unit = next(iter(sup.units.values()))
        unit._on_change(unit)  # as a state change would
        cpu, _ = await cpu_per_request(f"{base}/metrics", 1)
        total += cpu
    return total / 5


async def measure(units: int, scrapes: int, idle_window: float = 10.0) -> None:
    port, *ports = free_ports(units + 1)
    specs = [unit_spec(f"u{i}", port=p) for i, p in enumerate(ports)]

    async def work(sup, rec):
        sup.start_all()
        await sup.wait_until(sup.all_ready)
        view = SimpleNamespace(supervisor=sup, current=Loaded(specs, info={"synapse_version": "bench"}),
                               reloads=SimpleNamespace(generation=1),
                               operations=SimpleNamespace(current=None))
        telemetry = Telemetry(MetricsAddress("127.0.0.1", port))
        await telemetry.start(view)
        try:
            for unit in sup.units.values():  # what the listener would have seen
                telemetry.unit_changed(unit)
            base = f"http://127.0.0.1:{port}"
            await cpu_per_request(f"{base}/metrics", 2)  # warm up: psutil objects, imports
            idle_before, began = time.process_time(), time.monotonic()
            await asyncio.sleep(idle_window)
            idle = (time.process_time() - idle_before) / (time.monotonic() - began)  # probes, per second
            began = time.monotonic()
            per_scrape, size = await cpu_per_request(f"{base}/metrics", scrapes)
            per_scrape -= idle * (time.monotonic() - began) / scrapes
            cold = await cold_scrape(base, sup)
            per_targets, _ = await cpu_per_request(f"{base}/targets", scrapes)
        finally:
            telemetry.close()
        print(f"units: {units} (C fake units, real processes, HTTP liveness probes every 10 s)")
        print(f"/metrics: {per_scrape * 1000:.1f} ms of daemon CPU per scrape "
              f"({size / 1024:.0f} KiB, {scrapes} scrapes; target < 50 ms)")
        print(f"/metrics right after a unit changed (state families rendered again): {cold * 1000:.1f} ms")
        print(f"/targets: {per_targets * 1000:.2f} ms per request")
        print(f"between scrapes: {idle * 1000:.1f} ms of daemon CPU per second (the probes; no metric is polled)")

    await with_supervisor(specs, work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=500)
    parser.add_argument("--scrapes", type=int, default=50)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds measuring the probes' own CPU")
    args = parser.parse_args()
    configure("json", level=logging.WARNING)  # 500 units' start lines would drown the figures
    asyncio.run(measure(args.units, args.scrapes, args.idle))


if __name__ == "__main__":
    main()
