"""`synsup upgrade` with the fake Synapse: a "new venv" is a wrapper script that runs the same
python as another release (SYNAPSE_FAKE_VERSION/SCHEMA/COMPAT); the database is the fake's
schema.json, which main migrates at start and workers check."""

from __future__ import annotations

import json
import os
import stat
import sys

import pytest

pytestmark = pytest.mark.integration
OLD, NEW = "1.163.0", "1.164.0"


def new_python(directory: str, schema: int = 95, compat: int = 90, reject: str = "", version: str = NEW) -> str:
    path = os.path.join(directory, f"python-{version}-{schema}-{compat}{'-' + reject if reject else ''}")
    with open(path, "w") as f:
        f.write(f"#!/bin/sh\nexport SYNAPSE_FAKE_VERSION={version} SYNAPSE_FAKE_SCHEMA={schema} "
                f"SYNAPSE_FAKE_COMPAT={compat} SYNAPSE_FAKE_REJECT_KEYS={reject}\nexec {sys.executable} \"$@\"\n")
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return path


def schema(d) -> dict:
    with open(os.path.join(d.control, "schema.json")) as f:
        return json.load(f)


def pids(d) -> dict[str, int]:
    return {u["name"]: u["pid"] for u in d.status()["units"]}


def versions(d) -> dict[str, str]:
    return {u["name"]: u["version"] for u in d.status()["units"] if u["kind"] in ("main", "worker")}


@pytest.fixture
def on_old(running):
    assert set(versions(running).values()) == {OLD}
    return running


def test_dry_run_prints_versions_migration_and_order_and_changes_nothing(on_old, short_dir):
    before, db = pids(on_old), schema(on_old)
    done = on_old.synsup("upgrade", "--python", new_python(short_dir), "--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert f"Synapse {OLD} (schema 94) -> {NEW} (schema 95, compat 90)" in out and "migration: yes" in out
    lines = [line for line in out.splitlines() if line.startswith("restart")]
    order = [line.split(":")[0].split(None, 1)[1] for line in lines]
    assert order[:2] == ["main", "persister1, persister2"] and sorted(order[2:]) == ["generic1", "pusher1", "sender1"]
    assert pids(on_old) == before and schema(on_old) == db


def test_upgrade_migrates_then_restarts_in_order_on_the_new_code(on_old, short_dir):
    python = new_python(short_dir)
    done = on_old.synsup("upgrade", "--python", python)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "migrate the database schema" in done.stdout and f"upgraded: Synapse {OLD} -> {NEW}" in done.stdout
    assert schema(on_old) == {"current_version": 95, "compat_version": 90}
    starts = [e["name"] for e in on_old.events() if e["event"] == "start" and e.get("version") == NEW]
    assert starts[0] == "main" and set(starts[1:3]) == {"persister1", "persister2"} and len(starts) == 6
    assert set(versions(on_old).values()) == {NEW}
    status = on_old.status()
    assert status["daemon"]["last_upgrade"]["result"] == "upgraded"
    assert all(u["state"] == "ready" for u in status["units"])
    assert on_old.synsup("reload").returncode == 0  # reloads go on with the new code
    assert set(versions(on_old).values()) == {NEW}


def test_upgrade_halts_at_the_first_unit_that_does_not_become_ready(on_old, short_dir):
    on_old.behave("generic1", refuse_version=NEW)
    done = on_old.synsup("upgrade", "--python", new_python(short_dir))
    assert done.returncode == 1
    assert "upgrade halted at generic1" in done.stderr and "kept the old code" in done.stderr
    now = versions(on_old)
    assert now == {"main": NEW, "persister1": NEW, "persister2": NEW, "generic1": OLD, "sender1": OLD, "pusher1": OLD}
    last = on_old.status()["daemon"]["last_upgrade"]
    assert last["result"] == "partial" and last["unit"] == "generic1"
    assert on_old.unit("generic1")["state"] == "ready"  # back on the old code
    assert "last upgrade partial" in on_old.synsup("status").stdout


def test_config_the_new_code_rejects_changes_nothing(deployment, short_dir):
    deployment.shared["fake_legacy_option"] = True
    deployment.write()
    assert deployment.start().returncode == 0
    before, db = pids(deployment), schema(deployment)
    done = deployment.synsup("upgrade", "--python", new_python(short_dir, reject="fake_legacy_option"))
    assert done.returncode == 1 and "fake_legacy_option" in done.stderr and "nothing changed" in done.stderr
    assert pids(deployment) == before and schema(deployment) == db
    assert set(versions(deployment).values()) == {OLD}
    assert deployment.status()["daemon"]["last_upgrade"]["result"] == "rejected"


def test_schema_the_old_code_cannot_use_needs_allow_downtime(on_old, short_dir):
    python = new_python(short_dir, schema=96, compat=95)
    before = pids(on_old)
    done = on_old.synsup("upgrade", "--python", python)
    assert done.returncode == 1 and "--allow-downtime" in done.stderr
    assert pids(on_old) == before and schema(on_old)["current_version"] == 94
    done = on_old.synsup("upgrade", "--python", python, "--allow-downtime")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stop" in done.stdout and set(versions(on_old).values()) == {NEW}
    assert schema(on_old) == {"current_version": 96, "compat_version": 95}


def test_failed_migration_changes_nothing(on_old, short_dir):
    with open(os.path.join(on_old.control, "migrate.json"), "w") as f:
        json.dump({"fail": True}, f)
    before = pids(on_old)
    done = on_old.synsup("upgrade", "--python", new_python(short_dir))
    assert done.returncode == 1 and "fake migration failing" in done.stderr
    assert pids(on_old) == before and set(versions(on_old).values()) == {OLD}


def test_bad_python_is_one_line(on_old):
    done = on_old.synsup("upgrade", "--python", "/nonexistent/bin/python")
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "--python" in done.stderr


def test_a_migration_outlives_no_dead_daemon_unseen(on_old, short_dir):
    """Red team: a daemon killed during an upgrade's migration left it running, unlisted."""
    import signal
    import subprocess

    from helpers import REPO, processes_with, wait_for
    with open(os.path.join(on_old.control, "migrate.json"), "w") as f:
        json.dump({"delay": 60}, f)
    upgrade = subprocess.Popen([sys.executable, "-m", "synsup", "upgrade", "--python", new_python(short_dir),
                                "--state-dir", on_old.state_dir], env=on_old.env(), cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: any(u["name"] == "migration" for u in orphans_of(on_old, live=True)), timeout=60,
                 what="the migration to run")
        with open(os.path.join(on_old.state_dir, "daemon.json")) as f:
            os.kill(json.load(f)["pid"], signal.SIGKILL)
        wait_for(lambda: on_old.synsup("status").returncode == 3, what="the daemon to be gone")
        assert any(u["name"] == "migration" for u in orphans_of(on_old))
        assert on_old.start().returncode == 1  # a migration runs: no start on old code meanwhile
        done = on_old.synsup("stop", timeout=120)
        assert done.returncode == 0 and "migration" in done.stdout, done.stdout
        wait_for(lambda: not processes_with(on_old.control), timeout=15, what="every process to be gone")
    finally:
        upgrade.kill()
        upgrade.communicate()


def orphans_of(d, live=False):
    """Processes carrying the deployment's state dir marker, as `synsup status` lists them with
    no daemon; with `live`, read from /proc while the daemon still runs."""
    if live:
        import psutil
        with open(os.path.join(d.state_dir, "owner.token")) as f:
            token = f.read().strip()
        marks = [_environ(p).get("_SYNSUP_OWNER_MARK", "") for p in psutil.process_iter()]
        return [{"name": mark.split("/")[2]} for mark in marks  # token/unit/NAME, token/command/NAME/NONCE
                if mark.startswith((f"{token}/unit/", f"{token}/command/"))]
    return json.loads(d.synsup("status", "--json").stdout)["units"]


def _environ(proc):
    try:
        return proc.environ()
    except Exception:
        return {}


def last_start_version(d, name):
    return [e for e in d.events() if e["event"] == "start" and e["name"] == name][-1]["version"]


def test_a_partial_upgrade_is_kept_through_reloads_until_it_is_finished(on_old, short_dir):
    """Issue 20: after an upgrade halted, a reload repointed every unit at the old code (status said
    old for processes running the new one) and the next restart downgraded them."""
    import signal

    from helpers import wait_for
    python = new_python(short_dir)
    on_old.behave("generic1", refuse_version=NEW)
    assert on_old.synsup("upgrade", "--python", python).returncode == 1
    upgraded = {"main": NEW, "persister1": NEW, "persister2": NEW}
    partial = on_old.status()["daemon"]["partial_upgrade"]
    assert partial["units"] == sorted(upgraded) and partial["new"]["python"] == python
    assert partial["new"]["version"] == NEW and partial["old"]["version"] == OLD
    assert on_old.synsup("reload").returncode == 0
    assert versions(on_old) == {**upgraded, "generic1": OLD, "sender1": OLD, "pusher1": OLD}
    assert on_old.unit("main")["python"] == python
    pid = on_old.unit("main")["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: on_old.unit("main")["pid"] not in (None, pid) and on_old.unit("main")["state"] == "ready",
             timeout=30, what="main back")
    assert last_start_version(on_old, "main") == NEW
    assert "upgrade partial" in on_old.synsup("status").stdout
    on_old.behave("generic1")
    done = on_old.synsup("upgrade")  # finishes it: the new code is remembered
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(versions(on_old).values()) == {NEW} and on_old.status()["daemon"]["partial_upgrade"] is None


def test_the_next_start_after_an_upgrade_refuses_the_old_code(on_old, short_dir):
    """Issue 20: after `upgrade --python NEW`, `stop` and the same `start` brought every unit back on
    the old Synapse without a word."""
    python = new_python(short_dir)
    done = on_old.synsup("upgrade", "--python", python)
    assert done.returncode == 0 and f"--python {python}" in done.stdout and "unit file" in done.stdout, done.stdout
    assert {u["python"] for u in on_old.status()["units"] if u["kind"] in ("main", "worker")} == {python}
    assert all(f.startswith(on_old.state_dir) for f in on_old.unit("main")["config_files"])
    assert on_old.synsup("stop", timeout=120).returncode == 0
    refused = on_old.start()  # the unit file's --python still names the old code
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert f"last upgrade installed Synapse {NEW} ({python})" in refused.stderr
    assert f"--python {python}" in refused.stderr and "--force-python" in refused.stderr
    done = on_old.synsup("start", "--python", python, config=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(versions(on_old).values()) == {NEW}
    assert on_old.synsup("stop", timeout=120).returncode == 0
    done = on_old.synsup("start", "--force-python", config=True)  # a knowing downgrade
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(versions(on_old).values()) == {OLD}


def test_start_refuses_a_newer_release_whose_code_is_older_than_the_database_schema(on_old, short_dir):
    """Issue 20 audit: a start on another --python whose Synapse release is newer than what ran,
    but whose code is older than the database's schema allows (compat), is refused in one line."""
    upgraded = new_python(short_dir, schema=96, compat=95)
    done = on_old.synsup("upgrade", "--python", upgraded, "--allow-downtime")
    assert done.returncode == 0, done.stdout + done.stderr
    assert schema(on_old) == {"current_version": 96, "compat_version": 95}
    assert on_old.synsup("stop", timeout=120).returncode == 0
    newer_but_behind = new_python(short_dir, schema=94, compat=90, version="1.165.0")
    refused = on_old.synsup("start", "--python", newer_but_behind, config=True)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stdout + refused.stderr
    assert "the database needs schema version 95 or later, Synapse 1.165.0 has 94" in refused.stderr
    assert f"--python {upgraded}" in refused.stderr and "--force-python" in refused.stderr
    assert on_old.synsup("status").returncode == 3 and schema(on_old)["current_version"] == 96  # nothing ran


def test_a_partial_upgrade_survives_a_daemon_restart_until_rolled_back(on_old, short_dir):
    """Issue 20: the state of a partial upgrade is kept in the state dir: the next start runs each unit
    on the code it ran, and status shows it until the admin rolls it back."""
    python = new_python(short_dir)
    on_old.behave("generic1", refuse_version=NEW)
    assert on_old.synsup("upgrade", "--python", python).returncode == 1
    assert on_old.synsup("stop", timeout=120).returncode == 0
    on_old.behave("generic1")
    done = on_old.start()
    assert done.returncode == 0, done.stdout + done.stderr
    assert versions(on_old) == {"main": NEW, "persister1": NEW, "persister2": NEW, "generic1": OLD,
                                "sender1": OLD, "pusher1": OLD}
    assert on_old.status()["daemon"]["partial_upgrade"]["units"] == ["main", "persister1", "persister2"]
    assert "upgrade partial since" in on_old.synsup("status").stdout
    done = on_old.synsup("upgrade", "--python", sys.executable)  # roll back
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(versions(on_old).values()) == {OLD} and on_old.status()["daemon"]["partial_upgrade"] is None


def test_a_partial_upgrade_is_kept_when_the_daemon_is_killed_and_a_new_one_adopts(on_old, short_dir):
    """The seam of partial upgrade, kill -9 and adoption: the adopting daemon keeps each process
    where it is (no restart), knows which run the new code, shows the partial upgrade, and a crash
    of an upgraded unit brings it back on the new code, of a not-upgraded one on the old."""
    import signal

    from helpers import alive, wait_for
    python = new_python(short_dir)
    on_old.behave("generic1", refuse_version=NEW)
    assert on_old.synsup("upgrade", "--python", python).returncode == 1
    before = pids(on_old)
    with open(os.path.join(on_old.state_dir, "daemon.json")) as f:
        daemon = json.load(f)["pid"]
    os.kill(daemon, signal.SIGKILL)
    wait_for(lambda: not alive(daemon), what="the daemon to die")
    on_old.behave("generic1")
    done = on_old.start()
    assert done.returncode == 0, done.stdout + done.stderr
    assert pids(on_old) == before, "every process adopted where it was, none restarted"
    assert versions(on_old) == {"main": NEW, "persister1": NEW, "persister2": NEW, "generic1": OLD,
                                "sender1": OLD, "pusher1": OLD}
    assert on_old.status()["daemon"]["partial_upgrade"]["units"] == ["main", "persister1", "persister2"]
    for name, version in (("persister1", NEW), ("generic1", OLD)):
        pid = on_old.unit(name)["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda n=name, p=pid: on_old.unit(n)["pid"] not in (None, p) and on_old.unit(n)["state"] == "ready",
                 timeout=30, what=f"{name} back")
        assert last_start_version(on_old, name) == version
