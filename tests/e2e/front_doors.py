"""Real HAProxy or nginx (Debian's) in front of a deployment, for the e2e tests and the
benchmarks: configured with what `synsup routes` prints, listening on a loopback port below
32768, stopped by `stop()`. `start_args` is what `synsup start` needs to keep it in step.

The routes file sends event sending, sync, client reads and pagination to generic1 (main is the
backup), so a client through the proxy meets generic1's restarts."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import yaml
from helpers import free_ports

ROUTES = {category: ["generic1"] for category in ("event_sending", "sync", "client", "pagination")}
KINDS = ("haproxy", "nginx")


def program(name: str) -> str:
    found = shutil.which(name, path=f"/usr/sbin:/usr/bin:{os.environ.get('PATH', '')}")
    if found is None:
        raise RuntimeError(f"{name} is not installed (apt-get install {name})")
    return found


def until(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def write_routes_file(directory: str) -> str:
    path = os.path.join(directory, "routes.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(ROUTES, f)
    return path


class FrontDoor:
    """One proxy process in `directory`; `port` is where clients go."""

    kind = ""
    stop_signal = signal.SIGTERM

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.routes = write_routes_file(directory)
        self.port = free_ports(1)[0]
        self.process: subprocess.Popen | None = None
        self.start_args: list[str] = []

    def _run(self, argv: list[str]) -> None:
        with open(os.path.join(self.directory, f"{self.kind}.log"), "ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class HAProxyFrontDoor(FrontDoor):
    """HAProxy run with the complete file `synsup routes --format haproxy` prints; drains."""

    kind = "haproxy"

    def __init__(self, directory: str, config: str, workers: str, python: str) -> None:
        super().__init__(directory)
        socket = os.path.join(directory, "haproxy.sock")
        text = routes_text(config, workers, python, "--format", "haproxy", "--routes", self.routes,
                           "--listen", f"127.0.0.1:{self.port}", "--admin-socket", socket)
        path = os.path.join(directory, "haproxy.cfg")
        with open(path, "w") as f:  # and an access log on its stderr (haproxy.log), to see what failed
            f.write(text.replace("\nglobal\n", "\nglobal\n    log stderr format raw local0\n", 1)
                    .replace("\ndefaults\n", "\ndefaults\n    log global\n    option httplog\n", 1))
        self._run([program("haproxy"), "-db", "-f", path])
        until(lambda: os.path.exists(socket), "HAProxy's admin socket")
        self.start_args = ["--routes", self.routes, "--proxy", f"haproxy:{socket}"]


class NginxFrontDoor(FrontDoor):
    """nginx whose http {} includes a conf.d that `synsup start --proxy nginx:FILE` writes; no drain."""

    kind = "nginx"
    stop_signal = signal.SIGQUIT  # nginx's graceful stop

    def __init__(self, directory: str, config: str, workers: str, python: str) -> None:
        super().__init__(directory)
        os.makedirs(os.path.join(directory, "conf.d"), exist_ok=True)
        path, pid = os.path.join(directory, "nginx.conf"), os.path.join(directory, "nginx.pid")
        with open(path, "w") as f:
            f.write(f"daemon off;\npid {pid};\nerror_log {directory}/nginx-error.log;\nevents {{}}\n"
                    f"http {{\n  access_log off;\n  include {directory}/conf.d/*.conf;\n}}\n")
        nginx = program("nginx")
        self._run([nginx, "-p", directory, "-c", path])
        until(lambda: os.path.exists(pid), "nginx's pid file")
        self.start_args = ["--routes", self.routes, "--proxy", f"nginx:{directory}/conf.d/synapse-routes.conf",
                           "--proxy-listen", f"127.0.0.1:{self.port}",
                           "--proxy-reload", f"{nginx} -p {directory} -c {path} -s reload"]


def routes_text(config: str, workers: str, python: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "synsup", "routes", "-c", config, "-a", workers, "--python", python,
                           *args], capture_output=True, text=True, cwd="/", timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"synsup routes failed: {done.stderr.strip()}")
    return done.stdout


def front_door(kind: str, directory: str, config: str, workers: str, python: str) -> FrontDoor:
    """A running HAProxy or nginx in `directory` (made if missing)."""
    os.makedirs(directory, exist_ok=True)
    door = HAProxyFrontDoor if kind == "haproxy" else NginxFrontDoor
    return door(directory, config, workers, python)
