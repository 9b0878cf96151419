"""A new daemon of the same state dir adopts what an earlier one started (issue 20): after a
kill -9 of the daemon, `synsup start` keeps every unit (same pid), supervises it from then on,
and the units' output never depended on the dead daemon (they write their log files)."""

from __future__ import annotations

import json
import os
import signal

import pytest
from helpers import alive, processes_with, wait_for

pytestmark = pytest.mark.integration


def kill_daemon(d):
    with open(os.path.join(d.state_dir, "daemon.json")) as f:
        pid = json.load(f)["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not alive(pid), what="the daemon to die")
    return pid


def size(path):
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def test_start_after_a_killed_daemon_adopts_every_unit(deployment):
    deployment.behave("generic1", spam=200)
    assert deployment.start().returncode == 0
    before = deployment.pids()
    old_daemon = kill_daemon(deployment)
    log = os.path.join(deployment.state_dir, "logs", "generic1.log")
    grown = size(log) + 100_000
    wait_for(lambda: size(log) > grown, what="generic1's output to reach its log with no daemon alive")
    assert all(alive(pid) for pid in before.values())

    done = deployment.start()  # was: refused ("processes started by an earlier synsup still run")
    assert done.returncode == 0, done.stdout + done.stderr
    status = deployment.status()
    assert status["daemon"]["pid"] != old_daemon
    assert {u["name"]: u["state"] for u in status["units"]} == dict.fromkeys(
        ["redis", "postgres", "main", "persister1", "persister2", "generic1", "pusher1", "sender1"], "ready")
    assert deployment.pids() == before, "every unit keeps its process"
    assert [e for e in deployment.events() if e["event"] == "exit"] == []

    os.kill(before["persister1"], signal.SIGKILL)  # supervised from now on: a crash is seen and restarted
    unit = wait_for(lambda: (u := deployment.unit("persister1"))["state"] == "ready" and u["pid"] != before["persister1"]
                    and u, what="the adopted persister1 to be restarted")
    assert unit["restarts"] == 1 and "exited" in unit["error"] or "killed" in unit["error"], unit
    done = deployment.synsup("stop")
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: not processes_with(deployment.control), timeout=15, what="every process to be gone")


def test_replace_stops_what_the_dead_daemon_left_and_starts_afresh(deployment):
    assert deployment.start().returncode == 0
    before = deployment.pids()
    kill_daemon(deployment)
    done = deployment.synsup("start", "--replace", config=True)
    assert done.returncode == 0, done.stdout + done.stderr
    after = deployment.pids()
    assert all(after[name] != pid for name, pid in before.items())
    assert not any(alive(pid) for pid in before.values())


def test_unit_logs_rotate_by_copy_truncate(deployment):
    deployment.behave("generic1", spam=2000)
    done = deployment.synsup("start", "--log-max-bytes", "100000", "--log-backups", "2", config=True)
    assert done.returncode == 0, done.stdout + done.stderr
    log = os.path.join(deployment.state_dir, "logs", "generic1.log")
    wait_for(lambda: size(log + ".2") >= 100_000, timeout=30, what="two rotations of generic1.log")
    assert not os.path.exists(log + ".3")
    wait_for(lambda: size(log) < 100_000 * 3, what="generic1.log truncated, not growing without bound")


def test_a_command_reading_copies_of_the_config_is_the_command_of_the_files_it_copies():
    """Seam of adoption and the accepted-config copies: units read config/SERIAL/INDEX-NAME in the
    state dir, the new daemon's specs name the files on disk (or other copies): same command."""
    from synsup.supervisor.daemon.records import as_written
    copies = "/run/synsup/config"
    on_disk = ["/venv/bin/python", "-m", "synapse.app.generic_worker", "--config-path", "/etc/synapse/homeserver.yaml",
               "--config-path", "/etc/synapse/workers/generic1.yaml"]
    read = ["/venv/bin/python", "-m", "synapse.app.generic_worker", "--config-path", f"{copies}/3/0-homeserver.yaml",
            "--config-path", f"{copies}/3/1-generic1.yaml"]
    assert as_written(read, copies) == as_written(on_disk, copies)
    assert as_written(["/new/bin/python", *read[1:]], copies) != as_written(on_disk, copies)  # other code
    assert as_written(read[:-1] + [f"{copies}/3/1-generic2.yaml"], copies) != as_written(on_disk, copies)


def test_a_config_edited_while_the_daemon_was_dead_is_applied_as_a_reload_after_adoption(deployment):
    """The seam of adoption and reloads: the adopted processes run the config the dead daemon gave
    them; the files on disk changed meanwhile. The new daemon adopts, then applies the change as a
    reload would (generic1 restarted on its new file, the rest kept), never leaving a unit shown
    on a config it does not run."""
    assert deployment.start().returncode == 0
    before = deployment.pids()
    kill_daemon(deployment)
    deployment.workers["generic1"]["worker_log_level"] = "DEBUG"
    deployment.write()
    done = deployment.start()
    assert done.returncode == 0, done.stdout + done.stderr
    after = wait_for(lambda: (p := deployment.pids()).get("generic1") not in (None, before["generic1"])
                     and deployment.unit("generic1")["state"] == "ready" and p, timeout=30,
                     what="generic1 restarted on its edited file")
    assert {n: p for n, p in after.items() if n != "generic1"} == {n: p for n, p in before.items() if n != "generic1"}
    done = deployment.synsup("stop")
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: not processes_with(deployment.control), timeout=15, what="every process to be gone")


def test_a_persister_added_while_the_daemon_was_dead_is_coordinated_after_adoption(deployment):
    """The same seam where it matters most: the adopted main and persisters run the old events map;
    the new start must not run a new-map process beside them (Synapse's rule): the old set stops
    before any process with the new map starts."""
    import time

    from helpers import free_ports, listener, worker
    assert deployment.start().returncode == 0
    kill_daemon(deployment)
    (port,) = free_ports(1)
    deployment.shared["instance_map"]["persister3"] = {"host": "127.0.0.1", "port": port}
    deployment.shared["stream_writers"]["events"].append("persister3")
    deployment.workers["persister3"] = worker("persister3", listener(port, "replication"))
    deployment.write()
    edited_at = time.time()
    done = deployment.start()
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: len(units := deployment.status()["units"]) == 9 and all(u["state"] == "ready" for u in units),
             timeout=60, what="persister3 and everything else ready")
    events = [e for e in deployment.events() if e["t"] >= edited_at]
    new_set = ["persister1", "persister2", "persister3"]
    old_exits = [e["t"] for e in events if e["event"] == "exit" and e["name"] in ("persister1", "persister2")]
    new_starts = [e["t"] for e in events if e["event"] == "start" and e.get("events_writers") == new_set]
    assert new_starts, events
    assert len(old_exits) == 2 and max(old_exits) < min(new_starts), "an old-map persister ran beside a new-map process"
    last_start = {}
    for e in deployment.events():
        if e["event"] == "start":
            last_start[e["name"]] = e
    for name in ("main", "persister1", "persister2", "persister3", "generic1", "pusher1", "sender1"):
        assert last_start[name]["events_writers"] == new_set, name
    done = deployment.synsup("stop")
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: not processes_with(deployment.control), timeout=15, what="every process to be gone")


def test_a_start_refused_for_a_broken_config_says_the_dead_daemons_units_run_unsupervised(deployment):
    """A bad config never takes anything down, but the admin must know that what runs is not
    supervised until the config is fixed (it said only 'nothing started')."""
    assert deployment.start().returncode == 0
    before = deployment.pids()
    kill_daemon(deployment)
    with open(deployment.config, "a") as f:
        f.write("listeners: [\n")
    done = deployment.start()
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "7 process(es) of a synsup daemon that is gone still run, unsupervised" in done.stderr, done.stderr
    assert "fix the config and `synsup start` adopts them" in done.stderr
    assert all(alive(pid) for pid in before.values())
    deployment.write()
    done = deployment.start()
    assert done.returncode == 0, done.stdout + done.stderr
    assert deployment.pids() == before
    done = deployment.synsup("stop")
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: not processes_with(deployment.control), timeout=15, what="every process to be gone")
