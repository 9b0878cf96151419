"""Unit logs are rotated (copy-truncate) when they grow, and an idle unit's log costs nothing:
no stat, no timer (py-spy of an idle daemon with 500 units: every busy sample was the upkeep
pass that stat'ed every unit's log every 5 s)."""

from __future__ import annotations

import asyncio
import os
import sys
import time

import pytest

from synsup.supervisor.engine.health import Timing
from synsup.supervisor.engine.supervisor import Supervisor
from synsup.supervisor.engine.unit_output import UnitOutput
from synsup.supervisor.engine.unit_state import UnitState
from synsup.supervisor.spec import UnitSpec

pytestmark = pytest.mark.integration
CHATTY = "import time\nwhile True:\n    print('x' * 200, flush=True)\n    time.sleep(0.002)\n"


def python_unit(name: str, program: str) -> UnitSpec:
    return UnitSpec(name=name, argv=(sys.executable, "-c", program), stop_timeout=5)


async def poll(condition, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def contains(path: str, text: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            return text in f.read()
    except FileNotFoundError:
        return False


def run_with_logs(tmp_path, specs, scenario, monkeypatch):
    """`scenario(sup, looked_at)` with the units running and their logs kept (interval 0.05 s);
    looked_at: unit log path -> how many times the daemon looked at its size."""
    looked_at: dict[str, int] = {}
    upkeep = UnitOutput.upkeep

    def counted(output: UnitOutput) -> None:
        looked_at[output.path] = looked_at.get(output.path, 0) + 1
        upkeep(output)
    monkeypatch.setattr(UnitOutput, "upkeep", counted)

    async def main():
        sup = Supervisor(specs, log_dir=str(tmp_path), notify_dir=None, log_max_bytes=20_000, log_backups=1,
                         timing=Timing(notify_grace=0.0))
        async with asyncio.TaskGroup() as group:
            sup.spawn_tasks(group)
            keeper = group.create_task(sup.keep_logs(0.05))
            await asyncio.sleep(0)  # watching before the first spawn, as in the daemon
            try:
                sup.start_all()
                await sup.wait_until(lambda: all(u.state is UnitState.READY for u in sup.units.values()))
                await asyncio.wait_for(scenario(sup, looked_at), 60)
            finally:
                keeper.cancel()
                await sup.stop_all()
                sup.cancel_tasks()
        sup.close()
    asyncio.run(main())


def test_a_growing_log_is_rotated_and_an_idle_one_never_looked_at(tmp_path, monkeypatch):
    async def scenario(sup, looked_at):
        chatty, quiet = (os.path.join(tmp_path, f"{n}.log") for n in ("chatty", "quiet"))
        await poll(lambda: os.path.exists(chatty + ".1"), what="chatty.log rotated")
        await poll(lambda: looked_at.get(chatty, 0) >= 3, what="chatty.log looked at a few times")
        assert os.path.getsize(chatty + ".1") >= 20_000
        quiet_looks, chatty_looks = looked_at.get(quiet, 0), looked_at[chatty]
        await poll(lambda: looked_at[chatty] >= chatty_looks + 3, what="chatty.log looked at again")
        assert looked_at.get(quiet, 0) == quiet_looks == 0, "the unit wrote nothing (synsup's own lines are no change)"
        assert os.path.getsize(chatty) < 20_000 * 3, "truncated, not growing without bound"
    quiet = UnitSpec(name="quiet", argv=("sleep", "600"), stop_timeout=5)
    run_with_logs(tmp_path, [python_unit("chatty", CHATTY), quiet], scenario, monkeypatch)


def test_a_log_removed_under_a_unit_is_noticed_when_it_next_writes(tmp_path, monkeypatch):
    program = ("import os, time\nprint('up', flush=True)\n"
               "while not os.path.exists(os.environ['GO']): time.sleep(0.01)\nprint('again', flush=True)\n"
               "time.sleep(600)\n")
    go = os.path.join(tmp_path, "go")
    spec = UnitSpec(name="writer", argv=(sys.executable, "-c", program), env=(("GO", go),), stop_timeout=5)

    async def scenario(sup, looked_at):
        output = sup.units["writer"].output
        await poll(lambda: contains(output.path, b"up"), what="a line")
        os.unlink(output.path)
        open(go, "w").close()
        await poll(lambda: output.moved, what="the removed log to be noticed")
        assert output.describe_drops() is not None
    run_with_logs(tmp_path, [spec], scenario, monkeypatch)
