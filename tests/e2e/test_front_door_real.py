"""The front door with real Synapse, PostgreSQL and Redis: HAProxy (then nginx) started by the
test with the config `synsup routes` prints, synsup started with `--proxy`, a client through the
proxy sending messages at a steady rate and syncing while generic1 is restarted, killed with
SIGKILL, while a persister is added by a config change and while `synsup upgrade` runs (the
release pair of test_upgrade_real.py, whose venvs are cached). No message is lost or
duplicated; with HAProxy no request fails but for a SIGKILL, which may fail at most the requests
in flight (one send, one sync). Each case prints its failed requests and longest stall.
The tests run in order on one deployment per proxy."""

from __future__ import annotations

import os
import re
import signal
import time
from dataclasses import dataclass

import pytest
from helpers import binary, wait_for

from e2e.conftest import RealDeployment, all_ready, real_deployment
from e2e.front_doors import KINDS, FrontDoor, front_door
from e2e.matrix import Client
from e2e.steady_client import SteadyClient
from e2e.venvs import synapse_venv, upgrade_pair

pytestmark = pytest.mark.e2e
RATE = 5.0  # messages a second
IN_FLIGHT = 2  # a SIGKILL can catch one send and one sync on generic1


@dataclass
class Fronted:
    real: RealDeployment
    door: FrontDoor
    client: Client  # through the proxy, signed in
    room: str
    versions: dict[str, str]


@pytest.fixture(scope="module", params=KINDS)
def fronted(request):
    """The deployment started on the older release behind the proxy, a user signed in through it."""
    binary(request.param)
    old, new = upgrade_pair()
    versions = {"old": old, "new": new, "old_python": synapse_venv(old), "new_python": synapse_venv(new)}
    deployments = real_deployment()
    real = next(deployments)
    door = None
    try:
        door = front_door(request.param, os.path.join(real.root, "p"), real.config, real.workers_dir,
                          versions["old_python"])
        done = real.synsup("start", "-c", real.config, "-a", real.workers_dir, "--python", versions["old_python"],
                           *door.start_args)
        assert done.returncode == 0, done.stdout + done.stderr
        client = signed_in(real, door)
        yield Fronted(real, door, client, client.create_room(), versions)
    finally:
        real.synsup("stop")
        if door is not None:
            door.stop()
        deployments.close()  # the database dropped, the directory removed


def signed_in(real, door) -> Client:
    main = Client(f"http://127.0.0.1:{real.ports['main']}")
    main.register(real.shared()["registration_shared_secret"], "carol", "frontdoor")
    client = Client(f"http://127.0.0.1:{door.port}")
    wait_for(lambda: answers(client), timeout=60, what=f"the proxy on port {door.port}")
    client.login("carol", "frontdoor")
    return client


def answers(client: Client) -> bool:
    try:
        return client.request("GET", "/_matrix/client/versions", timeout=5)[0] == 200
    except OSError:
        return False


def proxy_states(real) -> dict[str, str]:
    return {u["name"]: u.get("proxy") for u in real.status()["units"]}


def through_the_proxy(fronted, label: str, prefix: str, change) -> SteadyClient:
    """Run `change()` while a steady client sends and syncs; print and check its figures."""
    door = fronted.door
    steady = SteadyClient(fronted.client, fronted.room, RATE, prefix).start()
    try:
        wait_for(lambda: len(steady.sender.sent) >= 10, timeout=60, what="10 messages sent")
        began = time.time()
        change()
        ended = time.time()
        count = len(steady.sender.sent)
        wait_for(lambda: len(steady.sender.sent) >= count + 5, timeout=120, what="5 messages after the change")
    finally:
        steady.finish()
    lost, duplicated = steady.lost_and_duplicated()
    print(f"\n{door.kind} {label}: {steady.requests} requests, {len(steady.failures)} failed, longest stall "
          f"{steady.sender.stall_between(began, ended):.2f} s, change {ended - began:.1f} s, "
          f"lost {len(lost)}, duplicated {len(duplicated)}" + "".join(f"\n  {e}" for e in steady.errors[:5]))
    if steady.failures and door.kind == "haproxy":
        with open(os.path.join(door.directory, "haproxy.log")) as f:
            print("".join(line for line in f if re.search(r" [5]\d\d ", line))[-3000:])  # its 5xx answers
    assert (lost, duplicated) == ([], []), "every message exactly once"
    return steady


def drains(fronted) -> bool:
    return fronted.door.kind == "haproxy"


def test_1_restart_of_a_generic_worker(fronted):
    real = fronted.real

    def restart() -> None:
        done = real.synsup("restart", "generic1")
        assert done.returncode == 0, done.stdout + done.stderr
    steady = through_the_proxy(fronted, "synsup restart generic1", "r", restart)
    if drains(fronted):
        assert steady.failures == [], steady.errors[:5]


def test_2_kill_9_of_a_generic_worker(fronted):
    real = fronted.real

    def kill() -> None:
        pid = real.pids()["generic1"]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: real.pids().get("generic1") not in (None, pid) and all_ready(real), timeout=120,
                 what="generic1 back")
        if drains(fronted):
            wait_for(lambda: proxy_states(real)["generic1"] == "ready", what="generic1 ready in HAProxy")
    steady = through_the_proxy(fronted, "kill -9 generic1", "k", kill)
    if drains(fronted):
        assert len(steady.failures) <= IN_FLIGHT, steady.errors[:5]


def test_3_persister_added_by_a_config_change(fronted):
    real = fronted.real

    steady = through_the_proxy(fronted, "persister3 added (reload)", "p", real.add_persister3)
    if drains(fronted):
        assert steady.failures == [], steady.errors[:5]


def test_4_upgrade(fronted):
    real, versions = fronted.real, fronted.versions

    def upgrade() -> None:
        done = real.synsup("upgrade", "--python", versions["new_python"])
        assert done.returncode == 0, done.stdout + done.stderr
    steady = through_the_proxy(fronted, f"synsup upgrade {versions['old']} -> {versions['new']}", "u", upgrade)
    assert {u["version"] for u in real.status()["units"] if u["kind"] in ("main", "worker")} == {versions["new"]}
    if drains(fronted):
        assert steady.failures == [], steady.errors[:5]
