"""`synsup upgrade` with real Synapse between two releases (the newest of the previous minor
series and the newest, each in its own venv cached under /tmp, see venvs.py), PostgreSQL and
Redis: messages sent during the upgrade all arrive; an upgrade the new code refuses changes
nothing. The tests run in order on one deployment."""

from __future__ import annotations

import os
import stat

import pytest
from helpers import wait_for

from e2e.conftest import real_deployment
from e2e.matrix import Client
from e2e.test_real_synapse import Sender
from e2e.venvs import synapse_venv, upgrade_pair

pytestmark = pytest.mark.e2e
MESSAGES = 150


@pytest.fixture(scope="module")
def real():
    yield from real_deployment()


@pytest.fixture(scope="module")
def pythons(real):
    old, new = upgrade_pair()
    return {"old": old, "new": new, "old_python": synapse_venv(old), "new_python": synapse_venv(new)}


def versions(real) -> dict[str, str]:
    return {u["name"]: u["version"] for u in real.status()["units"] if u["kind"] in ("main", "worker")}


def rejecting_python(real, python: str) -> str:
    """The new venv's python, playing new code that rejects this config: a per-cache factor
    Synapse cannot parse (Synapse reads SYNAPSE_CACHE_FACTOR_* while loading the config)."""
    path = os.path.join(real.root, "python-rejecting")
    with open(path, "w") as f:
        f.write(f"#!/bin/sh\nexport SYNAPSE_CACHE_FACTOR_GETEVENT=lots\nexec {python} \"$@\"\n")
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return path


def test_1_start_on_the_older_release(real, pythons):
    done = real.synsup("start", "-c", real.config, "-a", real.workers_dir, "--python", pythons["old_python"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(versions(real).values()) == {pythons["old"]}


def test_2_upgrade_the_new_code_rejects_changes_nothing(real, pythons):
    before = real.pids()
    done = real.synsup("upgrade", "--python", rejecting_python(real, pythons["new_python"]))
    assert done.returncode == 1 and "nothing changed" in done.stderr, done.stdout + done.stderr
    assert real.pids() == before and set(versions(real).values()) == {pythons["old"]}
    assert real.status()["daemon"]["last_upgrade"]["result"] == "rejected"


def test_3_dry_run_shows_the_plan(real, pythons):
    before = real.pids()
    done = real.synsup("upgrade", "--python", pythons["new_python"], "--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"-> {pythons['new']}" in done.stdout and "restart persister1, persister2" in done.stdout
    assert real.pids() == before


def test_4_upgrade_while_sending_loses_nothing(real, pythons):
    main = Client(f"http://127.0.0.1:{real.ports['main']}")
    main.register(real.shared()["registration_shared_secret"], "bob", "builder")
    main.login("bob", "builder")
    room = main.create_room()
    sender = Sender(main, room, "u", MESSAGES)
    sender.start()
    wait_for(lambda: sender.sent >= 10, timeout=60, what="10 messages sent")
    done = real.synsup("upgrade", "--python", pythons["new_python"])
    assert done.returncode == 0, done.stdout + done.stderr
    print("\n" + done.stdout)
    sender.finish()
    assert set(versions(real).values()) == {pythons["new"]}
    assert all(u["state"] == "ready" for u in real.status()["units"])
    texts = [t for t in main.texts(room) if t.startswith("u ")]
    assert texts == [f"u {i}" for i in range(MESSAGES)], "every message exactly once, in order"
