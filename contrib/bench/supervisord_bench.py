"""The same workloads under supervisord, run from its own virtualenv (.venv-supervisord)."""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import psutil

HERE = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.join(HERE, ".venv-supervisord")


def ensure_venv() -> str:
    supervisord = os.path.join(VENV, "bin", "supervisord")
    if not os.path.exists(supervisord):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([os.path.join(VENV, "bin", "pip"), "install", "-q", "supervisor"], check=True)
    return supervisord


def config(directory: str, unit: str, count: int) -> str:
    lines = ["[supervisord]", f"logfile={directory}/supervisord.log", f"pidfile={directory}/supervisord.pid",
             "nodaemon=true", "minfds=4096", "",
             "[unix_http_server]", f"file={directory}/supervisor.sock", ""]
    for i in range(count):
        lines += [f"[program:u{i}]", f"command={unit}", "autostart=true",
                  "autorestart=true", "startsecs=0", "startretries=1000", "stopwaitsecs=5",
                  f"stdout_logfile={directory}/u{i}.log", "redirect_stderr=true", ""]
    path = os.path.join(directory, "supervisord.conf")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


def children(proc: psutil.Process) -> dict[int, str]:
    found = {}
    for child in proc.children():
        try:
            found[child.pid] = " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            pass
    return found


def wait_count(proc: psutil.Process, count: int, timeout: float = 120) -> float:
    began = time.perf_counter()
    while len(children(proc)) < count:
        if time.perf_counter() - began > timeout:
            raise TimeoutError(f"supervisord started only {len(children(proc))} of {count}")
        time.sleep(0.01)
    return time.perf_counter() - began


def run_all(unit: str, crashes: int, idle: float) -> dict[str, float]:
    supervisord = ensure_venv()
    directory = tempfile.mkdtemp(prefix="sv", dir="/tmp")
    figures: dict[str, float] = {}
    daemon = subprocess.Popen([supervisord, "-c", config(directory, unit, 500)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc = psutil.Process(daemon.pid)
        figures["500 units spawned in one step, s"] = wait_count(proc, 500)
        time.sleep(2)
        before = proc.cpu_times()
        time.sleep(idle)
        after = proc.cpu_times()
        figures["500 idle units, probes off: % of a core"] = \
            100 * ((after.user + after.system) - (before.user + before.system)) / idle
        figures["500 idle units, probes off: RSS MB"] = proc.memory_info().rss / 2**20
        respawns = []
        for _ in range(crashes):
            pids = children(proc)
            victim = next(iter(pids))
            crashed = time.perf_counter()
            os.kill(victim, signal.SIGKILL)
            while True:
                now = children(proc)
                if victim not in now and len(now) == len(pids):
                    break
                time.sleep(0.002)
            respawns.append(time.perf_counter() - crashed)
        figures["respawn: crash -> spawned, median ms"] = statistics.median(respawns) * 1e3
        figures["respawn: crash -> spawned, p95 ms"] = sorted(respawns)[int(0.95 * (len(respawns) - 1))] * 1e3
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(120)
        shutil.rmtree(directory, ignore_errors=True)
    return figures
