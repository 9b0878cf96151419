"""Chaos inside the daemon, in-process (injected spawner, clock and stop trigger): bugs in one
unit's task, a daemon that fails, a full state dir, flapping, dependencies that fail."""

from __future__ import annotations

import asyncio
import errno
import os

import pytest
from fakes import FakeSpawner, run_supervisor, until

from synsup.supervisor.daemon.daemon import Daemon
from synsup.supervisor.engine.unit import Timing
from synsup.supervisor.engine.unit_state import UnitState
from synsup.supervisor.source import Loaded
from synsup.supervisor.spec import UnitSpec
from synsup.supervisor.statedir import StateDir

S = UnitState
TIMING = Timing(liveness_interval=None, notify_grace=0.0)


@pytest.fixture(autouse=True)
def no_subreaper(monkeypatch):
    """The test process must not become a subreaper: other tests' orphans would pile up under it."""
    monkeypatch.setattr("synsup.supervisor.daemon.daemon.become_subreaper", lambda: False)


def spec(name, *deps, step=0):
    return UnitSpec(name=name, argv=("fake", name), dependencies=deps, step=step, notify=False)


SPECS = [spec("redis"), spec("main", "redis", step=1), spec("worker", "main", step=2)]


class BrokenSpawner(FakeSpawner):
    """Raises an unexpected error (not OSError) for one unit: a bug, not a missing binary."""

    def __init__(self, broken: str) -> None:
        super().__init__()
        self.broken = broken

    async def spawn(self, spec, env, output):
        if spec.name == self.broken:
            raise RuntimeError("AF_UNIX path too long (simulated bug)")
        return await super().spawn(spec, env, output)


def daemon_in(short_dir, spawner, **kwargs):
    state = StateDir(os.path.join(short_dir, "s"))
    return Daemon(Loaded(SPECS), state, os.path.join(short_dir, "logs"), timing=TIMING, spawner=spawner, **kwargs)


def test_a_bug_in_one_unit_fails_that_unit_only(short_dir):
    async def main():
        stop = asyncio.Event()
        d = daemon_in(short_dir, BrokenSpawner("worker"), stop_trigger=stop.wait)
        run = asyncio.ensure_future(d.run())
        await until(lambda: d.supervisor is not None and d.supervisor.units["worker"].state is S.FAILED, 10_000)
        units = d.supervisor.units
        await until(lambda: d.operations.current is None, 10_000)
        assert "internal error: RuntimeError" in units["worker"].error
        assert units["main"].state is S.READY and units["redis"].state is S.READY
        assert d.status()["daemon"]["state"] == "degraded"
        stop.set()
        assert await run == 0
        assert all(u.state is S.STOPPED for u in units.values())
    asyncio.run(main())


def test_the_last_line_of_defence_stops_every_unit(short_dir):
    async def main():
        spawner = FakeSpawner()
        ready = asyncio.Event()

        async def failing_trigger():
            await ready.wait()
            raise RuntimeError("a bug in the daemon")

        d = daemon_in(short_dir, spawner, stop_trigger=failing_trigger)
        run = asyncio.ensure_future(d.run())
        await until(lambda: d.supervisor is not None and d.supervisor.all_ready(), 10_000)
        ready.set()
        assert await run == 0
        assert all(u.state is S.STOPPED for u in d.supervisor.units.values())
        assert all(child.exited for child in spawner.children)
        assert not os.path.exists(d.state.units_file) and not os.path.exists(d.state.socket)
    asyncio.run(main())


def test_a_full_state_dir_never_stops_the_daemon(short_dir, monkeypatch, capsys):
    def full(self, path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    async def main():
        stop = asyncio.Event()
        d = daemon_in(short_dir, FakeSpawner(), stop_trigger=stop.wait)
        monkeypatch.setattr(StateDir, "write_text", full)  # write_json writes through it
        run = asyncio.ensure_future(d.run())
        await until(lambda: d.supervisor is not None and d.supervisor.all_ready(), 10_000)
        await asyncio.sleep(0)
        assert d.status()["daemon"]["state"] == "running"
        stop.set()
        assert await run == 0
    asyncio.run(main())
    assert "No space left on device; supervising on" in capsys.readouterr().err


def test_a_flapping_unit_ends_failed(tmp_path):
    """Regression: a unit crashing 2 s after ready backed off forever and was never failed."""
    async def scenario(sup, clock, spawner):
        unit = sup.units["redis"]
        sup.start_all()
        for _ in range(5):
            child = await spawner.next_child()
            await until(lambda: unit.state is S.READY)
            clock.advance(2)
            child.exit(1)
        await until(lambda: unit.state is S.FAILED)
        assert "5 times in a row" in unit.error
        await sup.stop_all()
    run_supervisor(scenario, [spec("redis")], tmp_path, Timing(liveness_interval=None, notify_grace=0.0,
                                                               failed_retry=None))


def test_a_failed_unit_is_retried_after_its_cool_down(tmp_path):
    async def scenario(sup, clock, spawner):
        unit = sup.units["redis"]
        sup.start_all()
        for _ in range(5):
            (await spawner.next_child()).exit(1)
        await until(lambda: unit.state is S.FAILED)
        assert unit.retry_at is not None
        child = await spawner.next_child()  # the cool-down (fake clock) passed: a new try
        assert 300.0 in clock.sleeps
        await until(lambda: unit.state is S.READY)
        assert child.pid == unit.pid and unit.retry_at is None
        await sup.stop_all()
    run_supervisor(scenario, [spec("redis")], tmp_path, TIMING)


def test_waiting_on_a_failed_dependency_counts_as_settled(tmp_path):
    """Regression: main failing left its dependents `waiting` and `restart`/reloads hung."""
    async def scenario(sup, clock, spawner):
        sup.start_all()
        await spawner.next_child()  # redis
        await until(lambda: sup.units["redis"].state is S.READY)
        for _ in range(5):
            (await spawner.next_child()).exit(1)  # main never becomes ready
        await until(lambda: sup.units["main"].state is S.FAILED)
        worker = sup.units["worker"]
        assert worker.state is S.WAITING and worker.blocked_by is sup.units["main"] and worker.settled
        async with asyncio.timeout(5):
            await sup.restart(["worker"])  # returns although the worker cannot start
        await sup.stop_all()
    run_supervisor(scenario, SPECS, tmp_path, Timing(liveness_interval=None, notify_grace=0.0, failed_retry=None))


class RecordingNotifier:
    """Stands in for systemd's notify socket."""

    address = "@test"

    def __init__(self) -> None:
        self.sent: list[dict] = []

    def send(self, **fields) -> None:
        self.sent.append(fields)

    def status(self, text: str) -> None:
        self.send(STATUS=text)


class SlowSpawner(FakeSpawner):
    def __init__(self, slow: str) -> None:
        super().__init__()
        self.slow, self.release = slow, asyncio.Event()

    async def spawn(self, spec, env, output):
        if spec.name == self.slow:
            await self.release.wait()
        return await super().spawn(spec, env, output)


def test_ready_goes_to_systemd_after_the_start_and_a_sighup_waits_behind_it(short_dir, monkeypatch):
    """Regression: READY=1 went out with 1 of 7 units ready; a reload during the start left
    the daemon `starting` forever."""
    monkeypatch.setattr("synsup.supervisor.daemon.systemd.watchdog_interval", lambda: None)

    async def main():
        stop, spawner, notifier = asyncio.Event(), SlowSpawner("main"), RecordingNotifier()
        reloads = []
        d = daemon_in(short_dir, spawner, stop_trigger=stop.wait, notifier=notifier,
                      reloader=lambda: reloads.append(1) or Loaded(SPECS), planner=lambda old, new: [])
        run = asyncio.ensure_future(d.run())
        await until(lambda: d.supervisor is not None and d.supervisor.units["redis"].state is S.READY, 10_000)
        d.reloads.request()  # what SIGHUP does
        await asyncio.sleep(0)
        status = d.status()["daemon"]
        assert status["operation"]["name"] == "start" and status["queued"] == ["reload"]
        assert not any("READY" in m for m in notifier.sent) and not reloads
        spawner.release.set()
        await until(lambda: reloads and d.operations.current is None, 10_000)
        ready_at = next(i for i, m in enumerate(notifier.sent) if "READY" in m)
        assert notifier.sent[ready_at]["STATUS"].startswith("3/3 ready")
        assert any("RELOADING" in m for m in notifier.sent[ready_at:])
        assert d.status()["daemon"]["state"] == "running"
        stop.set()
        assert await run == 0
    asyncio.run(main())


def test_identical_log_events_are_rate_limited():
    import structlog

    from synsup.supervisor.daemon.daemon_log import RateLimiter
    limiter = RateLimiter(burst=3, window=60.0)
    passed = 0
    for _ in range(100):
        try:
            limiter(None, "warning", {"event": "probe.failed", "unit": "main", "error": "refused"})
            passed += 1
        except structlog.DropEvent:
            pass
    assert passed == 3
    limiter(None, "info", {"event": "unit.ready", "unit": "main"})  # another event passes


def test_an_idle_control_connection_is_dropped_with_an_answer(short_dir):
    from synsup.supervisor.daemon.control_server import ControlServer

    async def main():
        async def handler(request, send):
            await send({"ok": True})

        server = ControlServer(os.path.join(short_dir, "c.sock"), handler, request_timeout=0.2)
        await server.start()
        reader, writer = await asyncio.open_unix_connection(server.path)
        async with asyncio.timeout(5):
            line = await reader.readline()  # we never send: the server gives up and says why
        assert b"no request within 0.2s" in line and server.connections == 0
        writer.close()
        server.close()
    asyncio.run(main())
