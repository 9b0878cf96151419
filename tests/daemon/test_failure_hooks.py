"""Failure hooks: environment, once per unit a minute, the time limit, never waited for."""

from __future__ import annotations

import asyncio
import os

from synsup.supervisor.daemon.failure_hooks import FailureHooks


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


async def settle(h: FailureHooks) -> None:
    async with asyncio.timeout(10):
        while h._running:
            await asyncio.sleep(0.01)


def test_environment_and_once_per_unit_a_minute(tmp_path):
    out = tmp_path / "out"
    clock = Clock()

    async def main():
        h = FailureHooks([f'echo "$SYNSUP_EVENT $SYNSUP_UNIT $SYNSUP_ERROR $SYNSUP_HOST" >> {out}'], clock=clock)
        try:
            assert h.fire("failed", "main", "exited with code 1")
            assert not h.fire("failed", "main", "again")  # within the minute: suppressed
            assert h.fire("failed", "persister1", "unhealthy")  # another unit: runs
            assert h.fire("reload_rejected", None, "x.yaml:3: error")
            clock.now += 61
            assert h.fire("failed", "main", "third")
            await settle(h)
        finally:
            h.close()

    asyncio.run(main())
    lines = sorted(out.read_text().splitlines())
    host = os.uname().nodename
    assert lines == sorted([f"failed main exited with code 1 {host}", f"failed persister1 unhealthy {host}",
                            f"reload_rejected  x.yaml:3: error {host}", f"failed main third {host}"])


def test_time_limit_kills_the_hook_and_the_daemon_never_waits(tmp_path):
    pidfile = tmp_path / "pid"

    async def main():
        h = FailureHooks([f"echo $$ > {pidfile}; sleep 30"], time_limit=0.5)
        loop = asyncio.get_running_loop()
        began = loop.time()
        h.fire("failed", "main", "x")
        assert loop.time() - began < 0.1  # fire() only starts a task
        await settle(h)
        assert loop.time() - began < 5
        pid = int(pidfile.read_text())
        assert not os.path.exists(f"/proc/{pid}")

    asyncio.run(main())


def test_no_commands_no_runs():
    async def main():
        h = FailureHooks([])
        assert not h.fire("failed", "main", "x") and h.runs == 0

    asyncio.run(main())


def test_hooks_fire_for_crash_looping_before_failed_and_for_recovered(tmp_path):
    """A crash loop fired only `failed`, and nothing said when the unit was ready again."""
    from fakes import run_supervisor, until

    from synsup.supervisor.daemon.telemetry import Telemetry
    from synsup.supervisor.engine.unit import Timing
    from synsup.supervisor.engine.unit_state import UnitState
    from synsup.supervisor.spec import UnitSpec

    telemetry = Telemetry(on_failure=["true"])
    fired = []
    telemetry.hooks.fire = lambda event, unit, error: fired.append((event, unit, error)) or True

    async def scenario(sup, clock, spawner):
        unit = sup.units["w"]
        sup.add_listener(telemetry.unit_changed)
        sup.start_all()
        for _ in range(5):
            (await spawner.next_child()).exit(1)
        await until(lambda: unit.state is UnitState.FAILED)
        assert [e for e, _, _ in fired] == ["crash-looping", "failed"]
        assert fired[0][1] == "w" and "exited with code 1" in fired[0][2]
        await spawner.next_child()  # the retry after the cool-down stays up
        await until(lambda: unit.state is UnitState.READY)
        assert [e for e, _, _ in fired] == ["crash-looping", "failed", "recovered"]
        await sup.stop_all()
    run_supervisor(scenario, [UnitSpec(name="w", argv=("fake",), notify=False)], tmp_path,
                   Timing(liveness_interval=None, notify_grace=0.0))


def test_each_event_of_a_unit_has_its_own_minute():
    async def main():
        h = FailureHooks(["true"], clock=Clock())
        try:
            assert h.fire("crash-looping", "w", "x")
            assert h.fire("failed", "w", "x")  # not suppressed by the crash-looping run before it
            assert not h.fire("failed", "w", "again")
            await settle(h)
        finally:
            h.close()
    asyncio.run(main())
