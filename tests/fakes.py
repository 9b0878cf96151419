"""Test doubles for the engine: a clock that jumps instead of sleeping, scripted children."""

from __future__ import annotations

import asyncio
import signal

from synsup.supervisor.engine.process import Child


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_700_000_000.0 + self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class FakeChild(Child):
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._exit: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.signals: list[int] = []
        self.killed_after = None

    @property
    def exited(self) -> bool:
        return self._exit.done()

    def force_close(self) -> None:
        self.exit(-signal.SIGKILL)

    def exit(self, returncode: int) -> None:
        if not self._exit.done():
            self._exit.set_result(returncode)

    async def wait(self) -> int:
        return await asyncio.shield(self._exit)

    def exit_waiter(self) -> asyncio.Future[int]:
        return asyncio.shield(self._exit)

    def signal_group(self, sig: int) -> None:
        if sig == signal.SIGCONT:
            return  # a running child does not notice
        self.signals.append(sig)
        self.exit(-sig)


class FakeSpawner:
    """Hands out FakeChildren; a test script decides when each one exits."""

    def __init__(self) -> None:
        self.children: list[FakeChild] = []
        self._spawned = asyncio.Queue()

    async def spawn(self, spec, env, output) -> FakeChild:
        child = FakeChild(10_000 + len(self.children))
        self.children.append(child)
        self._spawned.put_nowait(child)
        return child

    async def next_child(self) -> FakeChild:
        async with asyncio.timeout(5):
            return await self._spawned.get()


async def until(predicate, turns: int = 1000) -> None:
    for _ in range(turns):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


def run_supervisor(scenario, specs, log_dir, timing, clock=None) -> None:
    """Run `scenario(sup, clock, spawner)` against a Supervisor of `specs` with a fake clock
    (or the one given) and fake children."""
    from synsup.supervisor.engine.supervisor import Supervisor

    async def main():
        spawner = FakeSpawner()
        nonlocal clock
        clock = clock or FakeClock()
        sup = Supervisor(specs, log_dir=str(log_dir), notify_dir=None, clock=clock, spawner=spawner, timing=timing)
        async with asyncio.TaskGroup() as group:
            sup.spawn_tasks(group)
            try:
                await scenario(sup, clock, spawner)
            finally:
                sup.cancel_tasks()
        sup.close()
    asyncio.run(main())
