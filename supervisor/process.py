"""Spawning a unit's process in its own session, and stopping its whole process group."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from dataclasses import dataclass

from .output import UnitOutput
from .spec import UnitSpec

if sys.version_info < (3, 12) and hasattr(os, "pidfd_open"):
    # One pidfd per child instead of a thread per child (3.12 does this by itself). Set before
    # the event loop exists, so asyncio.run attaches it.
    asyncio.set_child_watcher(asyncio.PidfdChildWatcher())


@dataclass(frozen=True)
class ExitStatus:
    code: int | None
    signal: str | None
    at: float

    @classmethod
    def from_returncode(cls, returncode: int, at: float) -> ExitStatus:
        if returncode < 0:
            return cls(None, signal.Signals(-returncode).name, at)
        return cls(returncode, None, at)

    def describe(self) -> str:
        if self.signal == "SIGKILL":
            return "killed by SIGKILL (out of memory?)"
        if self.signal:
            return f"killed by {self.signal}"
        return f"exited with code {self.code}"

    def as_json(self) -> dict:
        return {"code": self.code, "signal": self.signal, "at": self.at}


class Child:
    """A running unit process: the leader of its own process group."""

    def __init__(self, proc: asyncio.subprocess.Process, pump: asyncio.Task) -> None:
        self.proc = proc
        self.pid = proc.pid
        self._pump = pump

    async def wait(self) -> int:
        returncode = await self.proc.wait()
        self.signal_group(signal.SIGKILL)  # leftovers of the group die with their leader
        try:
            async with asyncio.timeout(1.0):
                await self._pump
        except TimeoutError:
            self._pump.cancel()
        return returncode

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


class Spawner:
    """Starts unit processes; a test can put another spawner in its place."""

    async def spawn(self, spec: UnitSpec, env: dict[str, str], output: UnitOutput) -> Child:
        assert spec.argv is not None
        proc = await asyncio.create_subprocess_exec(
            *spec.argv,
            stdin=asyncio.subprocess.PIPE if spec.stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            cwd=spec.cwd,
            start_new_session=True,
        )
        if spec.stdin is not None and proc.stdin is not None:
            proc.stdin.write(spec.stdin)
            proc.stdin.close()
        assert proc.stdout is not None
        pump = asyncio.get_running_loop().create_task(output.pump(proc.stdout))
        return Child(proc, pump)


async def stop_child(child: Child, exited: asyncio.Future, timeout: float) -> None:
    """SIGTERM to the group; SIGKILL to the group if it is still there after `timeout`."""
    child.signal_group(signal.SIGTERM)
    try:
        async with asyncio.timeout(timeout):
            await asyncio.shield(exited)
    except TimeoutError:
        child.signal_group(signal.SIGKILL)
        await exited
