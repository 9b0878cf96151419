"""--metrics, /targets, status resources, top and --on-failure on a running daemon (fake Synapse)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request

import pytest
from helpers import REPO, free_ports, wait_for
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
        return r.read()


def read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def metric(base: str, name: str, **labels) -> float | None:
    for family in text_string_to_metric_families(get(f"{base}/metrics").decode()):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


@pytest.fixture
def observed(deployment):
    """The fake deployment with metrics listeners on main and persister1, started with
    --metrics and an --on-failure hook that writes its environment to a file."""
    d = deployment
    main_port, p1_port, synsup_port, generic_port = free_ports(4)
    d.shared["enable_metrics"] = True
    d.shared["listeners"].append({"type": "metrics", "port": main_port, "bind_addresses": ["127.0.0.1"]})
    d.workers["persister1"]["worker_listeners"].append(
        {"type": "metrics", "port": p1_port, "bind_addresses": ["127.0.0.1"]})
    d.write()
    d.metrics_ports = {"main": main_port, "persister1": p1_port, "generic1": generic_port}
    d.base = f"http://127.0.0.1:{synsup_port}"
    d.hook_dir = os.path.join(d.root, "hooks")
    os.makedirs(d.hook_dir)
    hook = f'env | grep ^SYNSUP_ | sort > "{d.hook_dir}/$SYNSUP_EVENT-$SYNSUP_UNIT.env"'
    d.started = d.synsup("start", "--metrics", f"127.0.0.1:{synsup_port}", "--on-failure", hook, config=True)
    return d


def test_metrics_targets_status_and_hooks(observed):
    d = observed
    assert d.started.returncode == 0, d.started.stdout + d.started.stderr
    assert metric(d.base, "synsup_unit_ready", unit="persister1", group="event_persisters") == 1
    assert metric(d.base, "synsup_unit_state", unit="main", state="ready") == 1
    assert metric(d.base, "synsup_unit_resident_memory_bytes", unit="main") > 1_000_000
    assert metric(d.base, "synsup_unit_open_fds", unit="main") > 3
    assert metric(d.base, "synsup_config_generation") == 1

    groups = json.loads(get(f"{d.base}/targets"))
    assert {g["labels"]["instance"]: g["targets"] for g in groups} == {
        "main": [f"127.0.0.1:{d.metrics_ports['main']}"], "persister1": [f"127.0.0.1:{d.metrics_ports['persister1']}"]}
    for group in groups:  # the targets answer as Prometheus would scrape them
        assert b"fake_synapse_up" in get(f"http://{group['targets'][0]}{group['labels']['__metrics_path__']}")

    old = d.unit("persister1")["pid"]
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: metric(d.base, "synsup_unit_restarts_total", unit="persister1") == 1, what="a restart counted")
    assert metric(d.base, "synsup_unit_exits_total", unit="persister1", reason="signal") == 1
    wait_for(lambda: metric(d.base, "synsup_unit_start_seconds_count", unit="persister1") == 2, what="2nd start")

    d.workers["generic1"]["worker_listeners"].append(
        {"type": "metrics", "port": d.metrics_ports["generic1"], "bind_addresses": ["127.0.0.1"]})
    d.write()
    wait_for(lambda: "generic1" in {g["labels"]["instance"] for g in json.loads(get(f"{d.base}/targets"))},
             what="generic1 in /targets after the reload")
    wait_for(lambda: metric(d.base, "synsup_reloads_total", result="applied") == 1, what="the reload counted")

    unit = d.unit("main")
    assert isinstance(unit["rss_bytes"], int) and unit["rss_bytes"] > 0 and isinstance(unit["cpu_percent"], float)
    table = d.synsup("status").stdout
    assert "RSS" in table.splitlines()[1] and "CPU%" in table.splitlines()[1]

    with open(os.path.join(d.workers_dir, "pusher1.yaml"), "w") as f:
        f.write("worker_app: [broken\n")
    assert d.synsup("reload").returncode == 1
    assert metric(d.base, "synsup_reloads_total", result="rejected") == 1
    hook_file = os.path.join(d.hook_dir, "reload_rejected-.env")
    env = wait_for(lambda: read(hook_file).endswith("\n") and read(hook_file), what="the reload hook's run")
    assert "SYNSUP_EVENT=reload_rejected" in env and "pusher1.yaml" in env and "SYNSUP_HOST=" in env


def test_failed_unit_runs_the_hook_once(deployment):
    deployment.behave("sender1", refuse=True)
    hook_dir = os.path.join(deployment.root, "hooks")
    os.makedirs(hook_dir)
    hook = f'env | grep ^SYNSUP_ | sort >> "{hook_dir}/$SYNSUP_UNIT.env"'
    done = deployment.synsup("start", "--on-failure", hook, config=True)
    assert done.returncode == 1 and "unit sender1 failed" in done.stderr
    path = os.path.join(hook_dir, "sender1.env")
    env = wait_for(lambda: read(path).endswith("\n") and read(path), what="the failure hook's run")
    assert "SYNSUP_EVENT=failed" in env and "SYNSUP_UNIT=sender1" in env
    assert "SYNSUP_ERROR=failed to become ready 5 times in a row" in env


def test_top_prints_blocks_until_interrupted(deployment):
    assert deployment.start().returncode == 0
    with subprocess.Popen([sys.executable, "-m", "synsup", "top", "--interval", "0.2", "--state-dir",
                           deployment.state_dir], stdout=subprocess.PIPE, text=True, cwd=REPO,
                          env=deployment.env()) as top:
        try:
            lines = [top.stdout.readline() for _ in range(20)]
            assert sum(line.startswith("UNIT") for line in lines) >= 2 and any("RSS" in line for line in lines)
        finally:
            top.send_signal(signal.SIGINT)
            assert top.wait(10) == 130


def test_bad_metrics_address_is_one_line(deployment):
    done = deployment.synsup("start", "--metrics", "localhost", config=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "--metrics 'localhost': give HOST:PORT" in done.stderr
    assert deployment.events() == []


def test_busy_metrics_port_is_one_line(deployment):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        done = deployment.synsup("start", "--metrics", f"127.0.0.1:{port}", config=True)
    assert done.returncode == 1 and "cannot listen" in done.stderr and "Traceback" not in done.stderr
