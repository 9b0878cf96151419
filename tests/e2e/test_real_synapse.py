"""End to end with real Synapse, PostgreSQL and Redis, shaped like the demo. The tests run in
order on one deployment (starting Synapse is the slow part)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import urllib.request

import pytest
import yaml
from helpers import wait_for

from e2e.conftest import all_ready
from e2e.matrix import Client

pytestmark = pytest.mark.e2e
MESSAGES = 200


class Sender(threading.Thread):
    """Sends numbered messages in the background, retrying each with its transaction id."""

    def __init__(self, client: Client, room: str, prefix: str, count: int) -> None:
        super().__init__(daemon=True)
        self.client, self.room, self.prefix, self.count = client, room, prefix, count
        self.sent = 0
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            for i in range(self.count):
                self.client.send(self.room, f"{self.prefix}-{i}", f"{self.prefix} {i}")
                self.sent = i + 1
        except Exception as e:
            self.error = e

    def finish(self) -> None:
        self.join(300)
        assert not self.is_alive(), "sender did not finish"
        assert self.error is None, self.error


@pytest.fixture(scope="module")
def client(real):
    base = f"http://127.0.0.1:{real.ports['generic1']}"
    main = Client(f"http://127.0.0.1:{real.ports['main']}")
    return main, Client(base)


def test_1_start_brings_every_unit_to_ready(real):
    began = time.monotonic()
    done = real.synsup("start", config=True)
    real.start_seconds = time.monotonic() - began
    assert done.returncode == 0, done.stdout + done.stderr
    status = real.status()
    assert sorted(u["name"] for u in status["units"]) == sorted(
        ["redis", "postgres", "main", "persister1", "persister2", "generic1", "sender1", "pusher1", "background1"])
    assert [u["name"] for u in status["units"]][:3] == ["redis", "postgres", "main"]
    assert next(u for u in status["units"] if u["name"] == "postgres")["pid"] is None, "postgres is only probed"
    assert all(u["state"] == "ready" for u in status["units"])
    for name in ("main", "replication", "persister1", "persister2", "generic1"):
        with urllib.request.urlopen(f"http://127.0.0.1:{real.ports[name]}/health", timeout=10) as r:
            assert r.status == 200 and r.read() == b"OK"
    print(f"\nstart to all-ready: {real.start_seconds:.2f} s")


def test_1b_synsups_replication_request_is_answered_by_real_synapse_as_by_a_peer(real):
    """The request behind `degraded` (units/replication_reach.py): real Synapse answers it 200
    with the deployment's secret, from each instance_map process's own listener, and 500 with
    another secret (its "Invalid Authorization header")."""
    import asyncio
    import dataclasses

    from synsup.supervisor.engine.clock import Clock
    from synsup.supervisor.engine.peer_checks import PeerChecks
    from synsup.units.loader import load_deployment
    from synsup.units.unit_specs import unit_specs

    specs = {s.name: s for s in unit_specs(load_deployment([real.config], real.workers_dir, sys.executable).deployment)}
    pids = real.pids()
    checked = {name: s.peer_checks for name, s in specs.items() if s.peer_checks}
    assert sorted(checked) == ["main", "persister1", "persister2"]
    for name, checks in checked.items():
        assert asyncio.run(PeerChecks(Clock(), 30, 10, lambda: None).check_all(checks, pids[name])) is None, name
    wrong = dataclasses.replace(checked["main"][0], probe=dataclasses.replace(
        checked["main"][0].probe, headers=(("Authorization", "Bearer not-the-secret"),)))
    why = asyncio.run(PeerChecks(Clock(), 30, 10, lambda: None).check_all((wrong,), pids["main"]))
    assert why is not None and "answered 'HTTP/1.1 500 Internal Server Error'" in why
    assert all(u["degraded"] is None for u in real.status()["units"])


def test_2_messages_through_the_generic_worker(real, client):
    main, worker = client
    main.register(real.shared()["registration_shared_secret"], "alice", "wonderland")
    worker.login("alice", "wonderland")
    room = worker.create_room()
    real.room = room
    for i in range(MESSAGES):
        worker.send(room, f"m-{i}", f"m {i}")
    texts = [t for t in worker.texts(room) if t.startswith("m ")]
    assert texts == [f"m {i}" for i in range(MESSAGES)]


def test_3_kill_an_event_persister_while_sending(real, client):
    from synapse.config.workers import RoutableShardedWorkerHandlingConfig
    _, worker = client
    victim = RoutableShardedWorkerHandlingConfig(["persister1", "persister2"]).get_instance(real.room)
    old_pid = real.pids()[victim]
    sender = Sender(worker, real.room, "k", 60)
    sender.start()
    wait_for(lambda: sender.sent >= 10, timeout=60, what="10 messages sent")
    os.kill(old_pid, signal.SIGKILL)
    sender.finish()
    wait_for(lambda: all_ready(real) and real.pids()[victim] != old_pid, timeout=120, what=f"{victim} restarted")
    unit = next(u for u in real.status()["units"] if u["name"] == victim)
    assert unit["restarts"] == 1 and unit["last_exit"]["signal"] == "SIGKILL"
    texts = [t for t in worker.texts(real.room) if t.startswith("k ")]
    assert texts == [f"k {i}" for i in range(60)], "every message exactly once, in order"


def test_4_add_an_event_persister_while_sending(real, client):
    _, worker = client
    sender = Sender(worker, real.room, "p", 80)
    sender.start()
    wait_for(lambda: sender.sent >= 10, timeout=60, what="10 messages sent")
    edited = time.time()
    real.add_persister3()
    real.persister_change_seconds = time.time() - edited
    sender.finish()
    print(f"\npersister change, edit to all-ready: {real.persister_change_seconds:.2f} s")

    texts = [t for t in worker.texts(real.room) if t.startswith("p ")]
    assert texts == [f"p {i}" for i in range(80)], "every message exactly once, in order"
    events = real.daemon_events(edited)
    old_stops = [e["t"] for e in events if e["event"] == "unit.stopped" and e["unit"] in ("persister1", "persister2")]
    new_spawns = [e["t"] for e in events if e["event"] == "unit.spawned" and
                  e["unit"] in ("persister1", "persister2", "persister3")]
    assert len(old_stops) == 2 and len(new_spawns) == 3, (old_stops, new_spawns)
    assert max(old_stops) <= min(new_spawns), "an old-set persister ran while a new-set persister started"


def test_4b_shrink_event_persisters_to_one_while_sending(real, client):
    """Regression (issue 12): a persister dropped from stream_writers.events was left stopped."""
    _, worker = client
    sender = Sender(worker, real.room, "s", 60)
    sender.start()
    wait_for(lambda: sender.sent >= 10, timeout=60, what="10 messages sent")
    generation = real.status()["daemon"]["config_generation"]
    edited = time.time()
    shared = real.shared()
    shared["stream_writers"]["events"] = ["persister1"]
    real.write_shared(shared)
    wait_for(lambda: real.status()["daemon"]["config_generation"] > generation and all_ready(real), timeout=300,
             what="persisters shrunk to one, all ready")
    print(f"\npersister shrink, edit to all-ready: {time.time() - edited:.2f} s")
    sender.finish()
    units = {u["name"]: u for u in real.status()["units"]}
    for dropped in ("persister2", "persister3"):
        assert units[dropped]["state"] == "ready" and units[dropped]["step"] == 3, "runs on as a plain worker"
    texts = [t for t in worker.texts(real.room) if t.startswith("s ")]
    assert texts == [f"s {i}" for i in range(60)], "every message exactly once, in order"


def test_5_second_sender_removed_worker_and_broken_edit(real):
    before = real.pids()
    shared = real.shared()
    shared["federation_sender_instances"] = ["sender1", "sender2"]
    real.write_shared(shared)
    real.write_worker("sender2", {"worker_app": "synapse.app.generic_worker", "worker_name": "sender2",
                                  "worker_log_config": shared["log_config"]})
    wait_for(lambda: "sender2" in real.pids() and all_ready(real), timeout=180, what="sender2 ready")
    after = real.pids()
    assert after["sender1"] != before["sender1"], "senders are stopped and started together"
    assert after["main"] != before["main"], "main's federation send queue takes the new sender list"
    assert after["generic1"] == before["generic1"]

    generic_pid = after["generic1"]
    os.unlink(os.path.join(real.workers_dir, "generic1.yaml"))
    wait_for(lambda: "generic1" not in real.pids(), timeout=120, what="generic1 removed")
    assert not os.path.exists(f"/proc/{generic_pid}")

    before = real.pids()
    real.write_worker("pusher1", "worker_app: [broken\n")
    done = real.synsup("reload")
    assert done.returncode == 1 and "pusher1.yaml" in done.stderr
    assert real.pids() == before


def test_5b_value_synapse_rejects_is_refused_and_nothing_restarts(real):
    before = real.pids()
    generation = real.status()["daemon"]["config_generation"]
    real.write_worker("pusher1", {"worker_app": "synapse.app.generic_worker", "worker_name": "pusher1",
                                  "worker_log_config": real.shared()["log_config"]})
    shared = real.shared()
    shared["event_cache_size"] = "lots"
    real.write_shared(shared)
    done = real.synsup("reload")
    assert done.returncode == 1
    assert "every process: Synapse rejects this config: ValueError: invalid literal for int() with base 10: " \
           "'lots'" in done.stderr, done.stderr
    assert f"{real.config}:" in done.stderr
    assert real.pids() == before and real.status()["daemon"]["config_generation"] == generation


def test_5c_an_instance_map_address_that_reaches_no_listener_shows_the_stream_writer_degraded(real):
    """persister1 listens on 0.0.0.0 (IPv4 only) and instance_map.persister1 says ::1: `synsup
    check` accepts it (a wildcard listener), Synapse's processes cannot reach persister1, and
    before this every unit was `ready ok`, `status` exit 0."""
    shared = real.shared()
    shared.pop("event_cache_size", None)  # test_5b's rejected edit
    shared["instance_map"]["persister1"]["host"] = "::1"
    real.write_shared(shared)
    with open(os.path.join(real.workers_dir, "persister1.yaml")) as f:
        worker = yaml.safe_load(f)
    worker["worker_listeners"][0]["bind_addresses"] = ["0.0.0.0"]
    real.write_worker("persister1", worker)
    done = real.synsup("reload", timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    unit = wait_for(lambda: next((u for u in real.status()["units"] if u["name"] == "persister1" and u["degraded"]), None),
                    timeout=120, what="persister1 degraded")
    port = real.ports["persister1"]
    assert unit["state"] == "ready"
    assert unit["degraded"].startswith(f"instance_map.persister1 (http://::1:{port}/_synapse/replication/")
    assert "Connection refused; every replication request to persister1 fails; point instance_map.persister1 " \
           f"at persister1's replication listener (0.0.0.0:{port})" in unit["degraded"]
    status = real.synsup("status")
    assert status.returncode == 1 and "ready (degraded)" in status.stdout
    assert real.status()["daemon"]["state"] == "degraded"


def test_6_stop_leaves_nothing(real):
    pids = list(real.pids().values())
    done = real.synsup("stop")
    assert done.returncode == 0
    assert real.leftovers() == []
    assert not any(os.path.exists(f"/proc/{pid}") for pid in pids)
