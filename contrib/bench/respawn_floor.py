"""The floor of vs_supervisord.py's "crash -> new child" row on this machine: a bare asyncio
respawner of the same C units (a pidfd per child, subprocess.Popen, nothing else: no logs, no
state, no probes), measured from outside the same way (outside.py). What synsup takes beyond
this figure is its own; the rest is the kernel's and the machine's (the kill reaching the
pidfd, the exec, the observer's polling). Prints figures; asserts nothing.

  python contrib/bench/respawn_floor.py --units 500 --crashes 100
  python contrib/bench/respawn_floor.py --units 3 --crashes 2      # smoke
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time

import outside
from bench_units import UNIT


def respawner(units: int) -> None:
    """Keep `units` C units running; SIGTERM: kill them and exit."""
    children: dict[int, subprocess.Popen] = {}

    async def keep() -> None:
        loop = asyncio.get_running_loop()
        while True:
            child = subprocess.Popen(list(UNIT), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT, start_new_session=True, env={"UNIT_PORT": "0"})
            children[child.pid] = child
            pidfd = os.pidfd_open(child.pid)
            exited = loop.create_future()
            loop.add_reader(pidfd, lambda f=exited: f.done() or f.set_result(None))
            await exited
            loop.remove_reader(pidfd)
            os.close(pidfd)
            child.wait()
            del children[child.pid]

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        tasks = [asyncio.ensure_future(keep()) for _ in range(units)]
        await stop.wait()
        for task in tasks:
            task.cancel()
        for child in children.values():
            child.kill()
            child.wait()
    asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=500)
    parser.add_argument("--crashes", type=int, default=100)
    parser.add_argument("--respawner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.respawner:
        respawner(args.units)
        return
    keeper = subprocess.Popen([sys.executable, __file__, "--respawner", "--units", str(args.units)])
    try:
        outside.spawn_span(keeper.pid, args.units)
        time.sleep(1)
        took = outside.crash_to_new_child(keeper.pid, args.crashes)
    finally:
        keeper.send_signal(signal.SIGTERM)
        keeper.wait(60)
    q = sorted(took)
    print(f"bare respawner, {args.units} units: crash -> new child median {statistics.median(took) * 1e3:.3f} ms "
          f"(quartiles {q[len(q) // 4] * 1e3:.3f}-{q[3 * len(q) // 4] * 1e3:.3f} ms, {args.crashes} crashes)")


if __name__ == "__main__":
    main()
