"""A real Prometheus scraping synsup's /metrics and discovering every Synapse process's metrics
listener through synsup's /targets (http_sd), on the demo-shaped real deployment."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import urllib.parse
import urllib.request

import pytest
import yaml
from helpers import free_ports, wait_for

from e2e.conftest import real_deployment, skip_or_fail

pytestmark = pytest.mark.e2e
SYNAPSE_PROCESSES = {"main", "persister1", "persister2", "generic1", "sender1", "pusher1", "background1"}


class Prometheus:
    """prometheus on a loopback port with a generated config, its data in a temp dir."""

    def __init__(self, synsup_address: str) -> None:
        self.dir = tempfile.mkdtemp(prefix="sp", dir="/tmp")
        self.port = free_ports(1)[0]
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {"job_name": "synsup", "honor_labels": True, "static_configs": [{"targets": [synsup_address]}]},
                {"job_name": "synapse", "http_sd_configs": [
                    {"url": f"http://{synsup_address}/targets", "refresh_interval": "1s"}]},
            ],
        }
        with open(os.path.join(self.dir, "prometheus.yml"), "w") as f:
            yaml.safe_dump(config, f)
        self.log = open(os.path.join(self.dir, "prometheus.log"), "wb")
        self.proc = subprocess.Popen(
            [shutil.which("prometheus") or "prometheus", f"--config.file={self.dir}/prometheus.yml",
             f"--storage.tsdb.path={self.dir}/data", f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=self.log, start_new_session=True)

    def api(self, path: str, **params: str) -> dict:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.load(r)["data"]
        except OSError:
            return {}

    def targets(self) -> list[dict]:
        return self.api("targets").get("activeTargets", [])

    def query(self, expr: str) -> dict[str, float]:
        """{instance: value} of an instant query."""
        result = self.api("query", query=expr).get("result", [])
        return {r["metric"].get("unit") or r["metric"].get("instance", ""): float(r["value"][1]) for r in result}

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def monitored():
    skip_or_fail(None if shutil.which("prometheus") else "prometheus is not installed (apt-get install prometheus)")
    for d in real_deployment(metrics=True):
        d.metrics_address = f"127.0.0.1:{free_ports(1)[0]}"
        done = d.synsup("start", "--metrics", d.metrics_address, config=True)
        assert done.returncode == 0, done.stdout + done.stderr
        prometheus = Prometheus(d.metrics_address)
        try:
            yield d, prometheus
        finally:
            prometheus.close()


def summary(targets: list[dict]) -> str:
    return "\n".join(f"  {t['labels'].get('job'):<8} {t['labels'].get('instance'):<20} {t['scrapeUrl']:<45} "
                     f"{t['health']}" for t in sorted(targets, key=lambda t: (t['labels']['job'], t['labels']['instance'])))


def test_prometheus_finds_synsup_and_every_synapse_process_up(monitored):
    _, prometheus = monitored

    def all_up():
        targets = prometheus.targets()
        instances = {t["labels"]["instance"] for t in targets if t["labels"]["job"] == "synapse"}
        return instances == SYNAPSE_PROCESSES and all(t["health"] == "up" for t in targets) and len(targets) == 8

    wait_for(all_up, timeout=120, what=f"every target up; now:\n{summary(prometheus.targets())}")
    up = wait_for(lambda: len(found := prometheus.query("up")) == 8 and found, timeout=60, what="up in a query")
    assert set(up.values()) == {1.0}
    groups = prometheus.query('count by (instance) (synapse_build_info{job="synapse"})')
    assert set(groups) == SYNAPSE_PROCESSES, "each target is a real Synapse metrics endpoint"
    joined = wait_for(lambda: len(found := prometheus.query(
        'synsup_unit_ready * on(instance) group_left() synapse_build_info{job="synapse"}')) == 7 and found,
        timeout=60, what="synsup's unit series joined with Synapse's own on instance")
    assert set(joined) == SYNAPSE_PROCESSES
    print("\nPrometheus /api/v1/targets:\n" + summary(prometheus.targets()))


def test_a_killed_unit_counts_one_restart(monitored):
    d, prometheus = monitored
    query = 'synsup_unit_restarts_total{unit="persister1"}'
    before = wait_for(lambda: prometheus.query(query).get("persister1") is not None and prometheus.query(query),
                      timeout=60, what="the restart counter in Prometheus")["persister1"]
    pid = next(u["pid"] for u in d.status()["units"] if u["name"] == "persister1")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: prometheus.query(query).get("persister1") == before + 1, timeout=120,
             what="synsup_unit_restarts_total{unit=persister1} one higher")
    wait_for(lambda: prometheus.query('synsup_unit_ready{unit="persister1"}').get("persister1") == 1.0,
             timeout=120, what="persister1 ready again in Prometheus")
