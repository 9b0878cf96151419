"""synsup's engine against supervisord, on fake units. Prints figures; asserts nothing.

  python contrib/bench/bench.py                 # everything (about 6 minutes)
  python contrib/bench/bench.py --quick         # fewer crashes, 15 s idle windows
  python contrib/bench/bench.py --no-supervisord

supervisord is installed into contrib/bench/.venv-supervisord (never into synsup's own
environment: PyPI's supervisor package also provides an import package `supervisor`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import psutil

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "tests"))

import bench_units  # noqa: E402
from bench_units import UNIT, unit_argv, unit_spec  # noqa: E402  (imported from here by the others)

from synsup.supervisor.daemon.daemon_log import configure  # noqa: E402
from synsup.supervisor.engine.restart_policy import RestartPolicy  # noqa: E402
from synsup.supervisor.engine.supervisor import Supervisor  # noqa: E402
from synsup.supervisor.engine.unit_state import UnitState  # noqa: E402
from synsup.supervisor.spec import UnitSpec  # noqa: E402


def free_ports(n: int) -> list[int]:
    """`n` free loopback ports (tests/helpers.py, imported only here: the benchmark daemon
    imports this module, and its RSS is measured without pytest in it)."""
    from helpers import free_ports as free
    return free(n)


class Recorder:
    """perf_counter times of pid changes and ready transitions, from the engine's own events."""

    def __init__(self) -> None:
        self.spawned: dict[str, list[tuple[float, int]]] = {}
        self.ready: dict[str, list[float]] = {}

    def __call__(self, unit) -> None:
        now = time.perf_counter()
        name = unit.spec.name
        if unit.pid and (not self.spawned.get(name) or self.spawned[name][-1][1] != unit.pid):
            self.spawned.setdefault(name, []).append((now, unit.pid))
        if unit.state is UnitState.READY and len(self.ready.get(name, [])) < len(self.spawned.get(name, [])):
            self.ready.setdefault(name, []).append(now)


async def with_supervisor(specs, work, policy=RestartPolicy):
    tmp = tempfile.mkdtemp(prefix="sb", dir="/tmp")
    sup = Supervisor(specs, log_dir=tmp, notify_dir=tmp, policy=policy)
    recorder = Recorder()
    sup.add_listener(recorder)
    try:
        async with asyncio.TaskGroup() as group:
            sup.spawn_tasks(group)
            try:
                return await work(sup, recorder)
            finally:
                await sup.stop_all()
                sup.cancel_tasks()
    finally:
        sup.close()
        shutil.rmtree(tmp, ignore_errors=True)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def bench_respawn(crashes: int) -> tuple[list[float], list[float]]:
    async def work(sup, rec):
        unit = sup.units["u"]
        sup.start_all()
        to_spawn, to_ready = [], []
        for _ in range(crashes):
            await sup.wait_until(lambda: unit.state is UnitState.READY)
            spawns, readies = len(rec.spawned["u"]), len(rec.ready["u"])
            crashed = time.perf_counter()
            os.kill(unit.pid, signal.SIGKILL)
            await sup.wait_until(lambda readies=readies: len(rec.ready["u"]) > readies)
            to_spawn.append(rec.spawned["u"][spawns][0] - crashed)
            to_ready.append(rec.ready["u"][readies] - crashed)
        return to_spawn, to_ready

    # stable_after=0: every crash counts as the crash of a stable unit (restart at once)
    return await with_supervisor([unit_spec("u")], work, policy=lambda: RestartPolicy(stable_after=0.0))


def layered_specs(total: int, seed: int = 7) -> tuple[list[UnitSpec], float]:
    """redis-like, main-like, 8 writers, the rest: each with its own ready delay."""
    rng = random.Random(seed)
    sizes = [1, 1, 8, total - 10]
    specs, path, previous = [], 0.0, ()
    for step, size in enumerate(sizes):
        delays = [round(rng.uniform(0.5, 1.5), 2) for _ in range(size)]
        names = [f"s{step}u{i}" for i in range(size)]
        specs += [unit_spec(n, step, previous, d) for n, d in zip(names, delays)]
        path += max(delays)
        previous = tuple(names)
    return specs, path


async def bench_start_to_ready(total: int) -> tuple[float, float]:
    specs, path = layered_specs(total)

    async def work(sup, rec):
        began = time.perf_counter()
        sup.start_all()
        await sup.wait_until(sup.all_ready)
        return time.perf_counter() - began

    return await with_supervisor(specs, work), path


async def bench_spawn(total: int) -> float:
    async def work(sup, rec):
        began = time.perf_counter()
        sup.start_all()
        await sup.wait_until(lambda: len(rec.spawned) == total)
        return max(t for times in rec.spawned.values() for t, _ in times) - began

    return await with_supervisor([unit_spec(f"u{i}") for i in range(total)], work)


def idle_usage(pid: int, seconds: float) -> tuple[float, float]:
    """(% of one core, RSS MB) of one process over `seconds`."""
    proc = psutil.Process(pid)
    before = proc.cpu_times()
    time.sleep(seconds)
    after = proc.cpu_times()
    cpu = (after.user + after.system) - (before.user + before.system)
    return 100 * cpu / seconds, proc.memory_info().rss / 2**20


@contextlib.contextmanager
def bench_daemon(total: int, ports: list[int] | None = None, *options: str, parent: str = "/tmp",
                 remove: bool = True) -> Iterator[tuple[subprocess.Popen, str]]:
    """The synsup daemon (daemon.py run) over `total` units, HTTP-probed on `ports` if given,
    its state dir (and unit logs) new under `parent`: (the process, its state dir); stopped
    afterwards, and its dir removed unless the caller removes `parent` later."""
    state = tempfile.mkdtemp(prefix="si", dir=parent)
    args = [sys.executable, os.path.join(HERE, "daemon.py"), "run", "--state-dir", state,
            "--bench-units", str(total), "--log-format", "json", *options]
    if ports:
        args += ["--ports", ",".join(map(str, ports))]
    daemon = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield daemon, state
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(120)
        if remove:
            shutil.rmtree(state, ignore_errors=True)


def all_ready(state: str) -> bool:
    """Whether the daemon of `state` answers and says every unit is ready."""
    from synsup.supervisor.daemon.control_server import ControlClient, ControlError, NotRunning
    try:
        with ControlClient(os.path.join(state, "synsup.sock")) as client:
            units = client.request({"cmd": "status"})["units"]
    except (NotRunning, ControlError, OSError):  # not up yet, or too busy to answer within 10 s
        return False
    return bool(units) and all(u["state"] == "ready" for u in units)


def wait_all_ready(state: str, timeout: float = 120.0, poll: float = 0.5) -> float:
    """perf_counter time at which the daemon of `state` first said every unit was ready."""
    deadline = time.monotonic() + timeout
    while not all_ready(state):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the units of {state} were not all ready within {timeout:g} s")
        time.sleep(poll)
    return time.perf_counter()


def bench_idle_synsup(total: int, probes: bool, seconds: float) -> tuple[float, float]:
    with bench_daemon(total, free_ports(total) if probes else None) as (daemon, state):
        wait_all_ready(state)
        time.sleep(2)  # let the start settle before measuring the idle state
        return idle_usage(daemon.pid, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description="synsup engine benchmarks")
    parser.add_argument("--quick", action="store_true", help="10 crashes and 15 s idle windows")
    parser.add_argument("--units", type=int, default=500, help="units of the spawn and idle rows (default 500)")
    parser.add_argument("--crashes", type=int, help="respawns measured (default 50, --quick 10)")
    parser.add_argument("--idle", type=float, help="seconds of each idle window (default 60, --quick 15)")
    parser.add_argument("--no-supervisord", action="store_true")
    parser.add_argument("--python-units", action="store_true", help="units in Python instead of C")
    args = parser.parse_args()
    if args.python_units:
        os.environ["BENCH_PYTHON_UNITS"] = "1"  # for the daemon processes too
        bench_units.UNIT = unit_argv(True)  # what unit_spec runs
    print(f"units: {' '.join(bench_units.UNIT)}")
    crashes, idle = (10, 15.0) if args.quick else (50, 60.0)
    crashes, idle = args.crashes or crashes, args.idle or idle
    configure("json", stream=open(os.devnull, "w"))
    rows = engine_rows(crashes, args.units) + daemon_rows(args.units, idle)
    theirs = {} if args.no_supervisord else supervisord_figures(crashes, idle, args.units)
    print(f"\n{'measure':<50} {'synsup':>10} {'supervisord':>12} {'ratio':>7}  target")
    for label, value, target in rows:
        other = theirs.get(label)
        theirs_text = f"{other:12.2f}" if other is not None else f"{'-':>12}"
        ratio = f"{value / other:7.2f}" if other else f"{'-':>7}"
        print(f"{label:<50} {value:10.2f} {theirs_text} {ratio}  {target}")


def engine_rows(crashes: int, units: int) -> list[tuple[str, float, str]]:
    spawn_times, ready_times = asyncio.run(bench_respawn(crashes))
    took, path = asyncio.run(bench_start_to_ready(max(12, units // 5)))
    return [("respawn: crash -> spawned, median ms", statistics.median(spawn_times) * 1e3, "< 20"),
            ("respawn: crash -> spawned, p95 ms", percentile(spawn_times, 95) * 1e3, ""),
            ("respawn: crash -> ready, median ms", statistics.median(ready_times) * 1e3, ""),
            ("respawn: crash -> ready, p95 ms", percentile(ready_times, 95) * 1e3, ""),
            (f"{max(12, units // 5)} units start -> all ready, s", took, f"critical path {path:.2f} s"),
            ("  over the critical path, %", 100 * (took - path) / path, "< 5"),
            (f"{units} units spawned in one step, s", asyncio.run(bench_spawn(units)), "< 2")]


def daemon_rows(units: int, idle: float) -> list[tuple[str, float, str]]:
    cpu, rss = bench_idle_synsup(units, False, idle)
    probed_cpu, probed_rss = bench_idle_synsup(units, True, idle)
    return [(f"{units} idle units, probes off: % of a core", cpu, "<= supervisord"),
            (f"{units} idle units, probes off: RSS MB", rss, "< 45"),
            (f"{units} idle units, probes every 10 s: % of a core", probed_cpu, "< 0.5"),
            (f"{units} idle units, probes every 10 s: RSS MB", probed_rss, "")]


def supervisord_figures(crashes: int, idle: float, units: int) -> dict[str, float]:
    from supervisord_bench import run_all
    return run_all(" ".join(UNIT), crashes, idle, units)


if __name__ == "__main__":
    main()
