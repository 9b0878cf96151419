"""`synsup upgrade` between two Synapse releases (each in its own venv, see
tests/e2e/venvs.py) while a client sends messages at a steady rate and syncs, straight at a
generic worker or with --proxy through HAProxy or nginx (as topology.py), and `synsup restart`
for comparison (what `pip install -U` + `synsup restart` costs), everything and rolling. Prints,
for each: total time, failed client requests, the longest stall, seconds the client could not
send; at the end lost and duplicated messages. Real Synapse, PostgreSQL (role synsup/synsup, as
contrib/test.sh sets up) and Redis. Prints figures; asserts nothing.

  .venv/bin/python contrib/bench/upgrade.py [--rate 5] [--proxy haproxy|nginx|none] [--from VERSION] [--to VERSION]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))

from e2e.venvs import synapse_venv, upgrade_pair  # noqa: E402
from topology import PROXIES, Bench, bench_session, report, steady_client  # noqa: E402


def timed(bench: Bench, label: str, *args: str) -> tuple[str, float, float]:
    began = time.time()
    done = bench.synsup(*args)
    ended = time.time()
    if done.returncode != 0:
        raise SystemExit(f"{label} failed:\n{done.stdout}{done.stderr}")
    return f"{label}: total", began, ended


def run(bench: Bench, rate: float, old: str, new: str) -> None:
    old_python, new_python = synapse_venv(old), synapse_venv(new)
    began = time.monotonic()
    bench.start(old_python)
    print(f"start on Synapse {old} -> all ready {time.monotonic() - began:.1f} s "
          f"({len(bench.status()['units'])} units), proxy {bench.proxy}", flush=True)
    steady = steady_client(bench, rate)
    time.sleep(3)  # a steady state to disturb
    changes = [timed(bench, "synsup restart (everything, in order)", "restart", "--timeout", "900")]
    time.sleep(3)
    changes.append(timed(bench, "synsup restart --rolling", "restart", "--rolling", "--timeout", "900"))
    time.sleep(3)
    changes.append(timed(bench, f"synsup upgrade {old} -> {new}", "upgrade", "--python", new_python,
                         "--timeout", "900"))
    time.sleep(3)
    steady.finish()
    report(steady, changes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=5.0, help="messages per second")
    parser.add_argument("--proxy", choices=PROXIES, default="none",
                        help="the client's way in: HAProxy or nginx in front (synsup start --proxy), or none")
    parser.add_argument("--from", dest="old", help="the older release (default: the newest minus one)")
    parser.add_argument("--to", dest="new", help="the newer release (default: the newest)")
    args = parser.parse_args()
    old, new = (args.old, args.new) if args.old and args.new else upgrade_pair()
    with bench_session("upg", None, args.proxy) as bench:
        run(bench, args.rate, old, new)


if __name__ == "__main__":
    main()
