"""Start-to-all-ready of an 11-process deployment (Redis, main and 9 workers: the demo plus
three generic workers, as check_speed.py writes it): synsup against `synctl start -a`, in
paired runs (synsup, then synctl, on the migrated database), and the timeline of synsup's last
start from its daemon.log.

The floor: the CPU seconds the Synapse processes spent during a start (read from /proc when all
are ready) divided by the cores: no start on this machine can be faster. Beside it, the share of
the cores the whole machine kept busy (/proc/stat: Synapse, PostgreSQL, synsup's command and
daemon, the kernel): near 100%, a start is bound by the CPU its processes need, not by how
synsup orders them. Printed beside each
run, with the cores the Synapse processes kept busy in each half second of synsup's last start
(a value well under the core count is CPU left idle, e.g. while main starts alone).

Needs real Synapse in this interpreter and PostgreSQL with role synsup/synsup (as
contrib/test.sh sets up). Prints figures; asserts nothing.

  .venv/bin/python contrib/bench/vs_synctl.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "contrib", "demo"))
sys.path.insert(0, os.path.join(REPO, "tests"))

sys.path.insert(0, HERE)

import deployment as demo  # noqa: E402
from check_speed import EXTRA_GENERIC, write_deployment  # noqa: E402
from helpers import free_ports  # noqa: E402
from installed import as_installed  # noqa: E402

DB = {"user": "synsup", "password": "synsup"}


def create_database(name: str) -> None:
    """The benchmark's database, or one line saying how to get PostgreSQL (not a traceback)."""
    import psycopg2  # from matrix-synapse[postgres]
    try:
        demo.create_database(name, DB)
    except psycopg2.OperationalError as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SystemExit(f"vs_synctl.py: PostgreSQL does not let role {DB['user']} in on 127.0.0.1 ({reason}); "
                         f"start it and make the role: bash contrib/postgres.sh {DB['user']} {DB['password']}") from None


def healthy(ports: list[int]) -> bool:
    for port in ports:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status != 200:
                    return False
        except OSError:
            return False
    return True


CORES = os.cpu_count() or 1
SAMPLE = 0.5  # seconds per value of the busy-cores line


class SynapseCpu(threading.Thread):
    """The CPU time of the Synapse processes (synapse.app.*) whose command line names `directory`
    (one deployment's; not Redis, not synsup), sampled every SAMPLE s while a start runs."""

    def __init__(self, directory: str) -> None:
        super().__init__(daemon=True)
        self.directory = directory
        self.seen: dict[tuple[int, int], float] = {}  # (pid, start time) -> CPU seconds
        self.samples: list[float] = []  # total CPU seconds at each sample
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(SAMPLE):
            self.samples.append(self.read())

    def read(self) -> float:
        tick = os.sysconf("SC_CLK_TCK")
        for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = f.read()
                if self.directory.encode() not in cmdline or b"synapse.app." not in cmdline:
                    continue  # not this deployment's Synapse (synsup's own command names the config too)
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            self.seen[(pid, int(fields[19]))] = (int(fields[11]) + int(fields[12])) / tick
        return sum(self.seen.values())

    def finish(self) -> float:
        """Stop sampling; the CPU seconds spent so far."""
        self._done.set()
        self.join()
        return self.read()

    def busy_cores(self) -> list[float]:
        totals = [0.0, *self.samples]
        return [(b - a) / SAMPLE for a, b in zip(totals, totals[1:])]


def floor(cpu: float) -> float:
    return cpu / CORES


def machine_busy() -> float:
    """CPU seconds the whole machine has computed since boot (/proc/stat: every state but idle
    and iowait), all processes and the kernel: with it, how busy a start kept the cores."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    counted = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is in user)
    return (counted - idle) / os.sysconf("SC_CLK_TCK")


class Busy:
    """The share of the cores the machine kept busy between its making and `share()`."""

    def __init__(self) -> None:
        self.began, self.cpu = time.monotonic(), machine_busy()

    def share(self) -> float:
        return (machine_busy() - self.cpu) / CORES / (time.monotonic() - self.began)


def synsup(state: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "synsup", *args, "--state-dir", state], cwd=REPO,
                          capture_output=True, text=True)


def time_synsup(config: str, workers: str, state: str) -> tuple[float, list[str], float, float]:
    """(start -> all ready, s; the start's timeline from daemon.log; Synapse's CPU seconds; the
    share of the cores the whole machine kept busy meanwhile)."""
    cpu = SynapseCpu(os.path.dirname(config))
    began, wall = time.monotonic(), time.time()
    busy = Busy()
    cpu.start()
    done = synsup(state, "start", "-c", config, "-a", workers, "--python", sys.executable)
    took = time.monotonic() - began
    machine = busy.share()
    spent = cpu.finish()
    if done.returncode != 0:
        raise SystemExit(done.stdout + done.stderr)
    lines = timeline(os.path.join(state, "daemon.log"), wall)
    lines.append(f"  cores busy with Synapse, per {SAMPLE:g} s ({CORES} cores): "
                 + " ".join(f"{c:.1f}" for c in cpu.busy_cores()))
    synsup(state, "stop")
    return took, lines, spent, machine


def timeline(daemon_log: str, began: float) -> list[str]:
    """What the start spent on what, in seconds since `synsup start` began: the daemon's own
    events, then each unit's spawn and ready (units in the order they became ready)."""
    daemon, units = {}, {}
    for event in _events(daemon_log, began):
        at = event["t"] - began
        if "unit" in event and event["event"] in ("unit.spawned", "unit.ready"):
            units.setdefault(event["unit"], {}).setdefault(event["event"].split(".")[1], at)
        elif event["event"].startswith(("daemon.", "config.", "supervisor.start_beside")):
            daemon.setdefault(event["event"], at)
    lines = [f"  {name:<24} +{at:6.2f} s" for name, at in daemon.items()]
    ordered = sorted(units.items(), key=lambda kv: kv[1].get("ready", 1e9))
    return lines + [f"  {name:<24} spawned +{times.get('spawned', float('nan')):6.2f} s   "
                    f"ready +{times.get('ready', float('nan')):6.2f} s" for name, times in ordered]


def _events(daemon_log: str, since: float) -> list[dict]:
    events = []
    with open(daemon_log) as f:
        for line in f:
            try:
                event = json.loads(line)
                event["t"] = datetime.fromisoformat(event["timestamp"]).timestamp()
            except (ValueError, KeyError, TypeError):
                continue
            if event["t"] >= since:
                events.append(event)
    return events


def synctl_copy(directory: str, config: str, workers: str) -> tuple[str, str]:
    """synctl needs daemonize and pid files: its own copy of the config."""
    copy = os.path.join(directory, "synctl")
    shutil.copytree(os.path.dirname(config), copy, ignore=shutil.ignore_patterns("state", "synctl"))
    with open(os.path.join(copy, "homeserver.yaml")) as f:
        shared = yaml.safe_load(f)
    shared.update(daemonize=True, pid_file=os.path.join(copy, "main.pid"))
    with open(os.path.join(copy, "homeserver.yaml"), "w") as f:
        yaml.safe_dump(shared, f)
    for name in os.listdir(os.path.join(copy, "workers")):
        path = os.path.join(copy, "workers", name)
        with open(path) as f:
            doc = yaml.safe_load(f)
        doc.update(worker_daemonize=True, worker_pid_file=os.path.join(copy, f"{doc['worker_name']}.pid"))
        with open(path, "w") as f:
            yaml.safe_dump(doc, f)
    with open(os.path.join(copy, "workers", "main.yaml"), "w") as f:
        f.write("worker_app: synapse.app.homeserver\n")  # how synctl -a learns to start main
    return os.path.join(copy, "homeserver.yaml"), os.path.join(copy, "workers")


def time_synctl(config: str, workers: str, redis_port: int,
                http_ports: list[int]) -> tuple[float, float, float, float]:
    """(synctl returned, all /health 200, Synapse's CPU seconds until then, the share of the
    cores the machine kept busy)."""
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""],
                             stdout=subprocess.DEVNULL)
    synctl = os.path.join(os.path.dirname(sys.executable), "synctl")
    cpu = SynapseCpu(os.path.dirname(config))
    try:
        began = time.monotonic()
        busy = Busy()
        cpu.start()
        subprocess.run([synctl, "start", config, "-a", workers], check=True, capture_output=True,
                       cwd=os.path.dirname(config))
        returned = time.monotonic() - began
        while not healthy(http_ports):
            if time.monotonic() - began > 300:
                raise SystemExit("synctl's deployment did not become healthy within 300 s")
            time.sleep(0.05)
        healthy_at, machine = time.monotonic() - began, busy.share()
        return returned, healthy_at, cpu.finish(), machine
    finally:
        if cpu.is_alive():
            cpu.finish()
        subprocess.run([synctl, "stop", config, "-a", workers], capture_output=True, cwd=os.path.dirname(config))
        redis.send_signal(signal.SIGTERM)
        redis.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="paired runs (synsup, then synctl)")
    args = parser.parse_args()
    as_installed()
    database = f"synsup_vs_{os.getpid()}"
    http_names = ["main", "replication", "persister1", "persister2", "generic1",
                  *(f"generic{n + 2}" for n in range(EXTRA_GENERIC))]
    ports = dict(zip([*http_names, "redis"], free_ports(len(http_names) + 1)))
    create_database(database)  # before the temp dir: a refusal here leaves nothing behind
    root = tempfile.mkdtemp(prefix="vs", dir="/tmp")
    try:
        config, workers = write_deployment(os.path.join(root, "d"), sys.executable, {**DB, "database": database},
                                           ports)
        state = os.path.join(root, "s")
        fresh, fresh_timeline, _, _ = time_synsup(config, workers, state)
        copy, copy_workers = synctl_copy(root, config, workers)
        pairs = [(time_synsup(config, workers, state),
                  time_synctl(copy, copy_workers, ports["redis"], [ports[n] for n in http_names]))
                 for _ in range(args.runs)]
    finally:
        demo.drop_database(database, DB)
        shutil.rmtree(root, ignore_errors=True)
    report(fresh, pairs)
    print("timeline of the first synsup start (empty database: migrations; Synapse's config check not cached):")
    print("\n".join(fresh_timeline))


def report(fresh: float, pairs: list) -> None:
    print(f"synsup start, empty database (migrations): {fresh:.2f} s to all ready")
    for (ours, _, our_cpu, our_busy), (returned, healthy_at, their_cpu, their_busy) in pairs:
        print(f"paired run: synsup start -> all ready {ours:.2f} s; synctl start -a returned {returned:.2f} s, "
              f"all /health 200 {healthy_at:.2f} s; synsup/synctl {ours / healthy_at:.2f}x; Synapse CPU "
              f"{our_cpu:.1f} s (synsup) / {their_cpu:.1f} s (synctl): floor {floor(our_cpu):.2f} s on {CORES} "
              f"cores = {floor(our_cpu) / healthy_at:.2f}x synctl, synsup {ours / floor(our_cpu):.2f}x the floor; "
              f"machine busy {100 * our_busy:.0f}% (synsup) / {100 * their_busy:.0f}% (synctl) of {CORES} cores")
    ours_median = statistics.median(p[0][0] for p in pairs)
    theirs_median = statistics.median(p[1][1] for p in pairs)
    floor_median = statistics.median(floor(p[0][2]) for p in pairs)
    ratios = [p[0][0] / p[1][1] for p in pairs]
    print(f"start -> all ready, migrated database, median of {len(pairs)}: synsup {ours_median:.2f} s, "
          f"synctl {theirs_median:.2f} s: {ours_median / theirs_median:.2f}x synctl (target <= 0.6x); "
          f"paired ratios {min(ratios):.2f}-{max(ratios):.2f}x, median {statistics.median(ratios):.2f}x")
    print(f"floor (Synapse's CPU seconds during synsup's start / {CORES} cores), median: {floor_median:.2f} s = "
          f"{floor_median / theirs_median:.2f}x synctl; synsup {ours_median:.2f} s, synctl {theirs_median:.2f} s")
    busy_median = statistics.median(p[0][3] for p in pairs)
    print(f"machine busy during synsup's start (every process and the kernel, /proc/stat), median: "
          f"{100 * busy_median:.0f}% of {CORES} cores")
    print("(synctl does not wait for readiness, and not for stream writers before other workers)")
    print("timeline of the last synsup start (seconds since `synsup start`; the config check reused):")
    print("\n".join(pairs[-1][0][1]))


if __name__ == "__main__":
    main()
