"""systemd integration: the notify protocol as a test notify socket sees it, and the unit files."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from helpers import REPO, wait_for

from synsup.supervisor.daemon.systemd import SystemdNotifier, watchdog_interval
from synsup.supervisor.engine.notify_socket import parse

UNIT_FILES = ("synsup.service", "synsup@.service")


class NotifyServer:
    """What systemd would receive: (time, fields) for every datagram."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            self.messages.append((time.time(), parse(data)))

    def first(self, key: str, value: str | None = None, after: float = 0.0) -> float | None:
        for t, fields in list(self.messages):
            if t >= after and key in fields and (value is None or fields[key] == value):
                return t
        return None

    def close(self) -> None:
        self._stop = True
        self.thread.join()
        self.sock.close()


@pytest.mark.integration
def test_notify_sequence(deployment, short_dir):
    server = NotifyServer(os.path.join(short_dir, "systemd.sock"))
    deployment.behave("main", ready_delay=1.5)
    env = {**deployment.env(), "NOTIFY_SOCKET": server.sock.getsockname(), "WATCHDOG_USEC": "400000",
           "SYNSUP_TIMEOUT_START_SEC": "1"}
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen([sys.executable, "-m", "synsup", "start", "--foreground", "--state-dir",
                             deployment.state_dir, "-c", deployment.config, "-a", deployment.workers_dir],
                            env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ready_at = wait_for(lambda: server.first("READY", "1"), timeout=60, what="READY=1")
        last_unit_ready = max(e["t"] for e in deployment.events() if e["event"] == "ready")
        assert ready_at >= last_unit_ready
        assert len({e["name"] for e in deployment.events() if e["event"] == "ready"}) == 6
        extend = server.first("EXTEND_TIMEOUT_USEC")
        assert extend is not None and extend < ready_at, "no EXTEND_TIMEOUT_USEC while main was starting"
        statuses = [f["STATUS"] for _, f in server.messages if "STATUS" in f]
        assert "8/8 ready" in statuses
        assert all(a != b for a, b in zip(statuses, statuses[1:])), statuses
        assert any(s.startswith("starting main (database migration may take a while)") for s in statuses)

        window_start = time.time()
        time.sleep(1.2)  # counting pings over a fixed window is what this checks
        pings = [t for t, f in server.messages if f.get("WATCHDOG") == "1" and t >= window_start]
        assert 4 <= len(pings) <= 9, f"{len(pings)} watchdog pings in 1.2 s at a 0.2 s interval"

        before_reload = time.time()
        assert deployment.synsup("reload").returncode == 0
        reloading = server.first("RELOADING", "1", after=before_reload)
        assert reloading is not None
        assert "MONOTONIC_USEC" in next(f for t, f in server.messages if t == reloading)
        assert server.first("READY", "1", after=reloading) is not None

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert server.first("STOPPING", "1") is not None
        assert not any("MAINPID" in f for _, f in server.messages), "a child's message reached synsup's socket"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.close()


def test_abstract_notify_address(short_dir):
    name = f"synsup-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        notifier = SystemdNotifier("@" + name)
        notifier.send(READY=1, STATUS="hello")
        assert parse(sock.recv(1024)) == {"READY": "1", "STATUS": "hello"}
        notifier.close()


def test_status_lines_go_to_systemd_only_when_they_change_and_at_most_once_a_second(short_dir):
    """About 100 STATUS= messages in 46 s, many identical."""
    import asyncio
    server = NotifyServer(os.path.join(short_dir, "systemd.sock"))

    async def main():
        notifier = SystemdNotifier(server.sock.getsockname())
        for _ in range(5):
            notifier.status("8/8 ready")
        for n in range(50):  # a burst of changes: the latest is sent, not all of them
            notifier.status(f"{n}/50 ready")
        await asyncio.sleep(notifier.min_status_interval * 1.5)
        notifier.status("49/50 ready")  # what systemd shows already
        notifier.close()
    try:
        asyncio.run(main())
        wait_for(lambda: server.first("STATUS", "49/50 ready"), timeout=5, what="the latest STATUS")
        statuses = [f["STATUS"] for _, f in server.messages if "STATUS" in f]
        assert statuses == ["8/8 ready", "49/50 ready"]
    finally:
        server.close()


def test_a_status_line_made_by_a_function_is_made_once_a_line_not_once_a_change(short_dir):
    """The daemon's STATUS= counts every unit: it was made on each of a respawn's unit changes."""
    import asyncio
    server = NotifyServer(os.path.join(short_dir, "systemd.sock"))
    made = []

    def line():
        made.append(1)
        return f"{len(made)} made"

    async def main():
        notifier = SystemdNotifier(server.sock.getsockname())
        for _ in range(100):
            notifier.status(line)
        assert len(made) == 1  # the first goes at once; the rest wait for one later line
        await asyncio.sleep(notifier.min_status_interval * 1.5)
        assert len(made) == 2
        notifier.close()
    try:
        asyncio.run(main())
        wait_for(lambda: server.first("STATUS", "2 made"), timeout=5, what="the latest STATUS")
        assert [f["STATUS"] for _, f in server.messages if "STATUS" in f] == ["1 made", "2 made"]
    finally:
        server.close()


def test_watchdog_interval_is_half_of_watchdog_usec():
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}) is None


@pytest.mark.integration
def test_journald_log_format(deployment):
    env = {**deployment.env(), "JOURNAL_STREAM": "8:12345"}
    proc = subprocess.Popen([sys.executable, "-m", "synsup", "run", "--state-dir", deployment.state_dir,
                             "-c", deployment.config, "-a", deployment.workers_dir],
                            env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: deployment.synsup("status").returncode == 0, timeout=60, what="all ready")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    lines = [l for l in err.splitlines() if l]
    assert lines and all(l.startswith("<") and l[1].isdigit() and l[2] == ">" for l in lines), lines[:3]
    assert any(l.startswith("<6>unit.ready") and "unit=main" in l for l in lines)
    assert "\x1b[" not in err


def _unit(path: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(path)
    return parser


@pytest.mark.parametrize("name", UNIT_FILES)
def test_unit_file_settings(name):
    unit = _unit(os.path.join(REPO, "contrib", "systemd", name))
    service = unit["Service"]
    assert service["Type"] == "notify" and service["KillMode"] == "process"  # units outlive a crashed synsup
    assert "synsup stop" in service["ExecStop"] and "$MAINPID" in service["ExecStop"]  # ... and are adopted
    assert "synsup stop --local " in service["ExecStop"], "--cluster: systemctl stop stops this host, not the cluster"
    assert service["RuntimeDirectoryPreserve"] == "yes"  # with their records
    assert service["Restart"] == "on-failure" and int(service["WatchdogSec"]) >= 10
    assert "start --foreground" in service["ExecStart"] and "reload" in service["ExecReload"]
    assert int(service["TimeoutStartSec"]) >= 300, "main alone may take 300 s to become ready"
    with open(os.path.join(REPO, "contrib", "systemd", name)) as f:
        timeout_env = [line for line in f if "SYNSUP_TIMEOUT_START_SEC=" in line]
    assert timeout_env and timeout_env[0].strip().endswith("=" + service["TimeoutStartSec"])
    assert int(service["TimeoutStopSec"]) >= 4 * 30, "four stop steps of up to 30 s each"
    assert service["NoNewPrivileges"] == "yes" and service["PrivateTmp"] == "yes"
    assert service["RuntimeDirectory"].startswith("synsup")
    assert unit["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.parametrize("name", UNIT_FILES)
def test_systemd_analyze_verify(name, tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing in CI; contrib/test.sh installs the systemd package")
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    with open(os.path.join(REPO, "contrib", "systemd", name)) as f:
        text = f.read()
    synsup = shutil.which("synsup") or os.path.join(os.path.dirname(sys.executable), "synsup")
    target = tmp_path / name.replace("@.", "@demo.")
    target.write_text(text.replace("/usr/local/bin/synsup", synsup))  # verify wants the binary to exist
    done = subprocess.run([analyze, "verify", "--man=no", str(target)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr


def _exposure(path: str) -> float:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    done = subprocess.run([analyze, "security", "--offline=yes", path], capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", done.stdout)
    assert match, done.stdout[-500:] + done.stderr
    return float(match.group(1))


@pytest.mark.parametrize("name", UNIT_FILES)
def test_unit_file_is_hardened_as_far_as_synapse_allows_and_the_readme_says_how_far(name, tmp_path):
    """systemd-analyze security rated synsup.service 6.5 MEDIUM."""
    path = os.path.join(REPO, "contrib", "systemd", name)
    service = _unit(path)["Service"]
    assert service["ProtectSystem"] == "strict" and service["UMask"] == "0027"
    with open(path) as f:
        lines = f.read().splitlines()
    assert service["CapabilityBoundingSet"] == "" and "SystemCallFilter=@system-service" in lines
    for setting in ("ProtectKernelLogs", "ProtectClock", "ProtectHostname", "RestrictNamespaces"):
        assert service[setting] == "yes", setting
    writable = service["ReadWritePaths"].split()
    assert any(p.startswith("/var/lib/matrix-synapse") for p in writable)
    assert any(p.startswith("/var/log/matrix-synapse") for p in writable)
    target = tmp_path / name.replace("@.", "@demo.")
    target.write_text("\n".join(lines) + "\n")
    score = _exposure(str(target))
    assert score <= 3.0, f"{name}: exposure {score}"
    with open(os.path.join(REPO, "contrib", "systemd", "README.md")) as f:
        readme = f.read()
    assert f"`systemd-analyze security` rates it {score} " in readme
