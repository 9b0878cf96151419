"""Real Synapse, PostgreSQL and Redis: the start order follows the database's schema state.
An empty database (main creates the schema) keeps main first; once the schema is current (no
migration pending for the Synapse that runs), the stream writers and workers are spawned beside
main, before it is ready, as synctl starts them, and each is still waited for until ready."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.e2e
WORKERS = ("persister1", "persister2", "generic1", "sender1", "pusher1", "background1")


def start(real) -> tuple[float, dict[str, float], list[dict]]:
    """`synsup start`; then from daemon.log: main ready at, each worker's spawn time, the verdicts."""
    since = time.time()
    done = real.synsup("start", config=True)
    assert done.returncode == 0, done.stdout + done.stderr
    events = real.daemon_events(since)
    main_ready = next(e["t"] for e in events if e["event"] == "unit.ready" and e.get("unit") == "main")
    spawned = {e["unit"]: e["t"] for e in events if e["event"] == "unit.spawned" and e.get("unit") in WORKERS}
    assert sorted(spawned) == sorted(WORKERS), spawned
    return main_ready, spawned, [e for e in events if e["event"] == "supervisor.start_beside"]


def all_ready_without_restarts(real) -> None:
    units = real.status()["units"]
    assert all(u["state"] == "ready" for u in units), units
    assert all(u["restarts"] == 0 for u in units), units


def test_1_an_empty_database_keeps_main_first(real):
    main_ready, spawned, verdicts = start(real)
    assert [v["allowed"] for v in verdicts] == [False] and "no schema yet" in verdicts[0]["why"], verdicts
    assert all(t >= main_ready for t in spawned.values()), (main_ready, spawned)
    all_ready_without_restarts(real)
    assert real.synsup("stop").returncode == 0


def test_2_with_the_schema_current_workers_start_beside_main(real):
    main_ready, spawned, verdicts = start(real)
    assert [v["allowed"] for v in verdicts] == [True] and "no migration" in verdicts[0]["why"], verdicts
    early = [name for name, t in spawned.items() if t < main_ready]
    assert early, (main_ready, spawned)
    print(f"\nspawned before main was ready: {', '.join(sorted(early))}")
    all_ready_without_restarts(real)
    assert real.synsup("stop").returncode == 0
    assert real.leftovers() == []
