"""The performance table of issue 21, synsup beside supervisord 4.x on the same C fake units,
measured from outside each daemon (outside.py: children in /proc/<pid>/task/*/children, CPU
from schedstat, RSS from /proc). Prints figures; asserts nothing.

  python contrib/bench/vs_supervisord.py --units 500            # about 5 minutes
  python contrib/bench/vs_supervisord.py --units 3 --idle 1 --crashes 2 --stable 0 --scrapes 2   # smoke

--dir is where both daemons' state and log dirs are made (default /tmp), all kept until the
end: the spawn row includes creating 500 log files, and on an ext4 without a journal (this
machine's) a new inode is looked for past every inode freed in the last 30 s
(ext4's recently_deleted): right after a phase removed its 500 files, the next phase's
creations cost 0.4-1.3 ms each instead of 15-25 us (perf: find_inode_bit -> recently_deleted).

A crash is answered at once only for a unit that was ready for 60 s (the default restart
policy; earlier it backs off 1 s): --stable is how long after all-ready the crashes begin.
Real Synapse against synctl: vs_synctl.py.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Callable

import outside
from bench import UNIT, bench_daemon, free_ports, wait_all_ready
from installed import as_installed
from supervisord_bench import supervisord

Figures = dict[str, float]


def supervisor_rows(pid: int, units: int, args: argparse.Namespace, ready: Callable[[], float]) -> Figures:
    """Spawn span, idle CPU, RSS and crash -> new child of the supervisor `pid`."""
    first, last = outside.spawn_span(pid, units)
    settled = ready()
    time.sleep(2)  # let the start settle
    figures = {"spawned": last - first, "idle": outside.cpu_percent(pid, args.idle), "rss": outside.rss_mb(pid)}
    time.sleep(max(0.0, settled + args.stable - time.perf_counter()))
    figures["respawn"] = statistics.median(outside.crash_to_new_child(pid, args.crashes)) * 1e3
    return figures


def probed_rows(units: int, args: argparse.Namespace, scratch: str) -> Figures:
    """synsup with an HTTP probe on every unit and --metrics: spawn -> all ready, settled CPU,
    the CPU of one /metrics scrape."""
    metrics, *ports = free_ports(units + 1)
    with bench_daemon(units, ports, "--metrics", f"127.0.0.1:{metrics}", parent=scratch, remove=False) as (daemon, state):
        _, last = outside.spawn_span(daemon.pid, units)
        figures = {"probed_ready": wait_all_ready(state, poll=0.1) - last}
        time.sleep(2)
        figures["probed_idle"] = outside.cpu_percent(daemon.pid, args.idle)
        figures["scrape"] = scrape_cpu_ms(daemon.pid, f"http://127.0.0.1:{metrics}/metrics", args.scrapes)
    return figures


def scrape_cpu_ms(pid: int, url: str, scrapes: int) -> float:
    """Median daemon CPU (ms) of one scrape, each measured alone."""
    per_scrape = []
    for _ in range(scrapes + 1):
        before = outside.cpu_seconds(pid)
        with urllib.request.urlopen(url, timeout=30) as reply:
            reply.read()
        time.sleep(0.05)  # the daemon closes the connection after answering
        per_scrape.append((outside.cpu_seconds(pid) - before) * 1e3)
    return statistics.median(per_scrape[1:])  # the first one warms up (imports, psutil objects)


ROWS = [  # (key, label, supervisord's figure key or None, target)
    ("respawn", "{n} units, crash -> new child (median), ms", "respawn", "<= 3"),
    ("spawned", "{n} units spawned (first spawn -> last), s", "spawned", "<= 0.5"),
    ("idle", "{n} units idle, no probes, % of a core", "idle", "0.000"),
    ("probed_idle", "{n} units, HTTP probe each, settled, % of a core", None, "<= 0.30"),
    ("probed_ready", "{n} HTTP-probed units: last spawn -> all ready, s", None, "<= 1"),
    ("rss", "daemon RSS, {n} units, MB", "rss", "<= supervisord"),
    ("scrape", "one /metrics scrape, {n} units, ms CPU", None, "<= 30"),
]


def print_table(units: int, ours: Figures, theirs: Figures) -> None:
    print("| figure | supervisord | synsup | target |\n|---|---|---|---|")
    for key, label, other, target in ROWS:
        them = f"{theirs[other]:.3f}" if other and other in theirs else "-"
        print(f"| {label.format(n=units)} | {them} | {ours[key]:.3f} | {target} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=500)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of each idle CPU window")
    parser.add_argument("--crashes", type=int, default=30)
    parser.add_argument("--stable", type=float, default=61.0, help="seconds after all-ready before crashing")
    parser.add_argument("--scrapes", type=int, default=10)
    parser.add_argument("--no-supervisord", action="store_true")
    parser.add_argument("--dir", default="/tmp", help="where the daemons' state and log dirs are made")
    args = parser.parse_args()
    as_installed()
    print(f"units: {' '.join(UNIT)}, {args.units} of them, state and logs under {args.dir}", flush=True)
    scratch = tempfile.mkdtemp(prefix="vs", dir=args.dir)
    try:
        with bench_daemon(args.units, parent=scratch, remove=False) as (daemon, state):
            ours = supervisor_rows(daemon.pid, args.units, args, lambda: wait_all_ready(state, poll=0.1))
        ours.update(probed_rows(args.units, args, scratch))
        theirs: Figures = {}
        if not args.no_supervisord:
            with supervisord(" ".join(UNIT), args.units, scratch, remove=False) as sv:
                theirs = supervisor_rows(sv.pid, args.units, args, time.perf_counter)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print_table(args.units, ours, theirs)


if __name__ == "__main__":
    main()
