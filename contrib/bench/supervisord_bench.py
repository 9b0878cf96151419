"""The same workloads under supervisord, run from its own virtualenv (.venv-supervisord)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import outside

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


@contextlib.contextmanager
def supervisord(unit: str, count: int, parent: str = "/tmp", remove: bool = True) -> Iterator[subprocess.Popen]:
    """supervisord running `count` programs of `unit`, its logs in a new dir under `parent`;
    stopped afterwards, and its dir removed unless the caller removes `parent` later."""
    binary = ensure_venv()
    directory = tempfile.mkdtemp(prefix="sv", dir=parent)
    daemon = subprocess.Popen([binary, "-c", config(directory, unit, count)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield daemon
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(120)
        if remove:
            shutil.rmtree(directory, ignore_errors=True)


def run_all(unit: str, crashes: int, idle: float, count: int = 500) -> dict[str, float]:
    """bench.py's rows for supervisord, seen from outside (outside.py)."""
    figures: dict[str, float] = {}
    with supervisord(unit, count) as daemon:
        first, last = outside.spawn_span(daemon.pid, count)
        figures[f"{count} units spawned in one step, s"] = last - first
        time.sleep(2)
        figures[f"{count} idle units, probes off: % of a core"] = outside.cpu_percent(daemon.pid, idle)
        figures[f"{count} idle units, probes off: RSS MB"] = outside.rss_mb(daemon.pid)
        respawns = outside.crash_to_new_child(daemon.pid, crashes)
        figures["respawn: crash -> spawned, median ms"] = statistics.median(respawns) * 1e3
        figures["respawn: crash -> spawned, p95 ms"] = sorted(respawns)[int(0.95 * (len(respawns) - 1))] * 1e3
    return figures
