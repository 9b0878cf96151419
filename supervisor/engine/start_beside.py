"""Whether a unit may start beside its dependencies (`UnitSpec.start_beside`): the source's check
command, run once for every unit that asks at about the same time (a start asks for ten workers
at once), its verdict kept for a few seconds. The engine knows nothing of why: exit 0 and the
first line of output is all it reads."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import structlog

from ..spec import StartBeside
from .clock import Clock
from .reaper import REAPER

KEEP = 10.0  # seconds a verdict answers later askers (the units of one start)


class StartBesideChecks:
    __slots__ = ("clock", "on_verdict", "_verdicts", "log")

    def __init__(self, clock: Clock, on_verdict: Callable[[], None]) -> None:
        self.clock = clock
        self.on_verdict = on_verdict  # a verdict is in: waiting units look again
        self._verdicts: dict[tuple[tuple[str, ...], bytes], tuple[float, asyncio.Future[bool]]] = {}
        self.log = structlog.get_logger()

    def verdict(self, beside: StartBeside) -> asyncio.Future[bool]:
        """The check's verdict for this start: running, or done less than KEEP seconds ago."""
        key = (beside.check, beside.input)
        known = self._verdicts.get(key)
        if known is not None and (not known[1].done() or self.clock.monotonic() - known[0] < KEEP):
            return known[1]
        future = asyncio.ensure_future(self._run(beside))
        self._verdicts[key] = (self.clock.monotonic(), future)
        future.add_done_callback(lambda _: self._finished(key))
        return future

    def _finished(self, key: tuple[tuple[str, ...], bytes]) -> None:
        known = self._verdicts.get(key)
        if known is not None:
            self._verdicts[key] = (self.clock.monotonic(), known[1])
        self.on_verdict()

    async def _run(self, beside: StartBeside) -> bool:
        allowed, why = await run_check(beside)
        self.log.info("supervisor.start_beside", allowed=allowed, why=why)
        return allowed

    def close(self) -> None:
        for _, future in self._verdicts.values():
            future.cancel()
        self._verdicts.clear()


async def run_check(beside: StartBeside) -> tuple[bool, str]:
    """(exit 0, its first output line or why it did not run)."""
    try:
        with REAPER.spawning():  # asyncio waits for it: the reaper must not take its exit status
            proc = await asyncio.create_subprocess_exec(
                *beside.check, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True, env=dict(os.environ))
            REAPER.waited.add(proc.pid)
    except OSError as e:
        return False, f"cannot run {beside.check[0]}: {e.strerror or e}"
    try:
        try:
            async with asyncio.timeout(beside.timeout):
                output, _ = await proc.communicate(beside.input)
        except (TimeoutError, asyncio.CancelledError) as e:
            proc.kill()
            await proc.wait()
            if isinstance(e, asyncio.CancelledError):
                raise
            return False, f"no answer within {beside.timeout:g}s"
    finally:
        REAPER.waited.discard(proc.pid)
    lines = output.decode(errors="replace").strip().splitlines()
    why = lines[0] if lines else f"exit code {proc.returncode}"
    return proc.returncode == 0, why
