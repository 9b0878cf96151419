"""`synsup upgrade` between two Synapse releases (each in its own venv, see
tests/e2e/venvs.py) while a client sends messages at a steady rate through a generic worker,
and `synsup restart` for comparison (what `pip install -U` + `synsup restart` costs). Prints,
for each: total time, failed client requests, seconds the client could not send; at the end
lost and duplicated messages. Real Synapse, PostgreSQL (role synsup/synsup, as
contrib/test.sh sets up) and Redis. Prints figures; asserts nothing.

  .venv/bin/python contrib/bench/upgrade.py [--rate 5] [--from VERSION] [--to VERSION]
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
from topology import Bench, bench_session, report, steady_sender  # noqa: E402


def timed(bench: Bench, label: str, *args: str) -> tuple[str, float, float]:
    began = time.time()
    done = bench.synsup(*args)
    ended = time.time()
    if done.returncode != 0:
        raise SystemExit(f"{label} failed:\n{done.stdout}{done.stderr}")
    return label, began, ended


def run(bench: Bench, rate: float, old: str, new: str) -> None:
    old_python, new_python = synapse_venv(old), synapse_venv(new)
    began = time.monotonic()
    done = bench.synsup("start", "-c", bench.config, "-a", bench.workers, "--python", old_python)
    if done.returncode != 0:
        raise SystemExit(done.stdout + done.stderr)
    print(f"start on Synapse {old} -> all ready {time.monotonic() - began:.1f} s "
          f"({len(bench.status()['units'])} units)", flush=True)
    client, room, sender = steady_sender(bench, rate)
    time.sleep(3)  # a steady state to disturb
    changes = [timed(bench, "synsup restart (everything, in order)", "restart", "--timeout", "900")]
    time.sleep(3)
    changes.append(timed(bench, f"synsup upgrade {old} -> {new}", "upgrade", "--python", new_python,
                         "--timeout", "900"))
    time.sleep(3)
    sender.stopping.set()
    sender.join(60)
    report(client, room, sender, changes, span="total")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=5.0, help="messages per second")
    parser.add_argument("--from", dest="old", help="the older release (default: the newest minus one)")
    parser.add_argument("--to", dest="new", help="the newer release (default: the newest)")
    args = parser.parse_args()
    old, new = (args.old, args.new) if args.old and args.new else upgrade_pair()
    with bench_session("upg", None) as bench:
        run(bench, args.rate, old, new)


if __name__ == "__main__":
    main()
