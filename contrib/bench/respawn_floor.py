"""The floor of vs_supervisord.py's "spawned" and "crash -> new child" rows on this machine: a
bare asyncio respawner of the same C units (a pidfd per child, os.posix_spawn as synsup spawns,
nothing else: no logs, no state, no probes), measured from outside the same way (outside.py):
its start (every unit spawned at once, first -> last child seen) and its crash restarts. What
synsup takes beyond these figures is its own; the rest is the kernel's and the machine's (the
exec, the new processes' own start on the same 2 cores, the kill reaching the pidfd, the
observer's polling). Prints figures; asserts nothing.

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
    children: set[int] = set()
    null = os.open(os.devnull, os.O_RDWR)
    quiet = [(os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, null, 1), (os.POSIX_SPAWN_DUP2, null, 2)]

    async def keep() -> None:
        loop = asyncio.get_running_loop()
        while True:
            pid = os.posix_spawn(UNIT[0], list(UNIT), {"UNIT_PORT": "0"}, file_actions=quiet, setsid=True)
            children.add(pid)
            pidfd = os.pidfd_open(pid)
            exited = loop.create_future()
            loop.add_reader(pidfd, lambda f=exited: f.done() or f.set_result(None))
            await exited
            loop.remove_reader(pidfd)
            os.close(pidfd)
            os.waitpid(pid, 0)
            children.discard(pid)

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        tasks = [asyncio.ensure_future(keep()) for _ in range(units)]
        await stop.wait()
        for task in tasks:
            task.cancel()
        for pid in children:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
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
        first, last = outside.spawn_span(keeper.pid, args.units)
        time.sleep(1)
        took = outside.crash_to_new_child(keeper.pid, args.crashes)
    finally:
        keeper.send_signal(signal.SIGTERM)
        keeper.wait(60)
    q = sorted(took)
    print(f"bare respawner, {args.units} units spawned (first -> last): {last - first:.3f} s")
    print(f"bare respawner, {args.units} units: crash -> new child median {statistics.median(took) * 1e3:.3f} ms "
          f"(quartiles {q[len(q) // 4] * 1e3:.3f}-{q[3 * len(q) // 4] * 1e3:.3f} ms, {args.crashes} crashes)")


if __name__ == "__main__":
    main()
