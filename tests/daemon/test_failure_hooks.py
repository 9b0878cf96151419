"""Failure hooks: environment, once per unit a minute, the time limit, never waited for."""

from __future__ import annotations

import asyncio
import os

from synsup.supervisor.daemon import failure_hooks
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
        failure_hooks.activate(h)
        try:
            assert failure_hooks.fire("failed", "main", "exited with code 1")
            assert not h.fire("failed", "main", "again")  # within the minute: suppressed
            assert h.fire("failed", "persister1", "unhealthy")  # another unit: runs
            assert h.fire("reload_rejected", None, "x.yaml:3: error")
            clock.now += 61
            assert h.fire("failed", "main", "third")
            await settle(h)
        finally:
            h.close()
            failure_hooks.activate(None)
        assert not failure_hooks.fire("failed", "main", "no daemon")

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
