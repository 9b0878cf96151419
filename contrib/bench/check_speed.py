"""Wall time of `synsup check` on a 10-process deployment (the demo plus three generic workers),
with Synapse's own config validation running for every process. Target: under 5 s on 2 cores.

Usage: python contrib/bench/check_speed.py [--python PYTHON] [--runs N]
The interpreter must have Synapse installed; nothing is started and no database is needed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "demo"))
import deployment as demo  # noqa: E402
from installed import as_installed  # noqa: E402

EXTRA_GENERIC = 3  # demo: main + 6 workers; 3 more make 10 Synapse processes


def write_deployment(directory: str, python: str, database: dict | None = None,
                     ports: dict | None = None) -> tuple[str, str]:
    """The demo plus generic2..4 (their client ports `ports["generic2"]`..., default 8082...)."""
    ports = {**demo.DEFAULT_PORTS, **{f"generic{n + 2}": 8082 + n for n in range(EXTRA_GENERIC)}, **(ports or {})}
    database = database or {"user": "synapse", "database": "synapse"}
    config, workers_dir = demo.write(directory, python, database, ports)
    for n in range(EXTRA_GENERIC):
        name = f"generic{n + 2}"
        doc = {"worker_app": "synapse.app.generic_worker", "worker_name": name,
               "worker_log_config": os.path.join(directory, "log.yaml"),
               "worker_listeners": [demo.http(ports[name], "client")]}
        demo.dump(os.path.join(workers_dir, f"{name}.yaml"), doc)
    return config, workers_dir


def time_check(config: str, workers_dir: str, python: str) -> float:
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "synsup", "check", "-c", config, "-a", workers_dir,
                           "--python", python], capture_output=True, text=True, cwd="/")
    elapsed = time.monotonic() - began
    if done.returncode != 0 or "note:" in done.stderr:
        sys.exit(f"synsup check did not pass cleanly:\n{done.stdout}{done.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    as_installed()
    with tempfile.TemporaryDirectory(prefix="checkspeed") as directory:
        config, workers_dir = write_deployment(directory, args.python)
        count = 1 + len([f for f in os.listdir(workers_dir) if f.endswith(".yaml")])
        times = [time_check(config, workers_dir, args.python) for _ in range(args.runs)]
    print(f"synsup check, {count} Synapse processes, {os.cpu_count()} cores, {args.runs} runs: "
          f"median {statistics.median(times):.2f} s, max {max(times):.2f} s")


if __name__ == "__main__":
    main()
