"""A unit without probes is failing while stopped, learnt from SIGCHLD (engine/child_stops.py),
not by reading /proc/<pid>/stat for every unit every 10 s (0.23 % of a core for 500 idle units)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time

import pytest

from synsup.supervisor.engine.child_stops import CHILD_STOPS, ChildStops
from synsup.supervisor.engine.clock import Clock
from synsup.supervisor.engine.restart_policy import RestartPolicy
from synsup.supervisor.engine.supervisor import Supervisor
from synsup.supervisor.engine.unit import Timing
from synsup.supervisor.engine.unit_state import UnitState
from synsup.supervisor.spec import UnitSpec

pytestmark = pytest.mark.integration


def until(condition, timeout=10.0, poll=None):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        if poll:
            poll()
        time.sleep(0.01)


def state_of(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_stops_and_continues_are_reported_and_the_exit_is_left_to_its_owner():
    stops, seen = ChildStops(), []
    child = subprocess.Popen(["sleep", "60"])
    try:
        stops.watch(child.pid, seen.append)
        os.kill(child.pid, signal.SIGSTOP)
        until(lambda: seen == [True], poll=stops.collect)
        os.kill(child.pid, signal.SIGCONT)
        until(lambda: seen == [True, False], poll=stops.collect)
        child.kill()
        until(lambda: state_of(child.pid) == "Z")  # exited, not yet reaped
        stops.collect()
    finally:
        child.kill()
        assert child.wait(10) == -signal.SIGKILL  # the exit status was not taken


class CountingClock(Clock):
    """The real clock, counting the sleeps of the given length (the liveness interval)."""

    def __init__(self, interval: float) -> None:
        self.interval, self.sleeps = interval, 0

    async def sleep(self, seconds: float) -> None:
        self.sleeps += seconds == self.interval
        await super().sleep(seconds)


def test_a_stopped_unit_without_probes_fails_and_restarts_and_a_running_one_wakes_no_timer(tmp_path):
    clock = CountingClock(0.05)
    timing = Timing(liveness_interval=0.05, failure_threshold=2, notify_grace=0.05)
    spec = UnitSpec(name="u", argv=("sleep", "60"), stop_timeout=2)

    async def main():
        asyncio.get_running_loop().add_signal_handler(signal.SIGCHLD, CHILD_STOPS.collect)
        sup = Supervisor([spec], log_dir=str(tmp_path), notify_dir=str(tmp_path), timing=timing, clock=clock,
                         policy=lambda: RestartPolicy(stable_after=0.0))
        unit = sup.units["u"]
        async with asyncio.TaskGroup() as group:
            sup.spawn_tasks(group)
            try:
                sup.start_all()
                await asyncio.wait_for(sup.wait_until(lambda: unit.state is UnitState.READY), 10)
                first = unit.pid
                await asyncio.sleep(0.5)  # ten liveness intervals, running
                assert clock.sleeps == 0  # was one /proc/<pid>/stat read per interval
                os.kill(first, signal.SIGSTOP)
                await asyncio.wait_for(sup.wait_until(
                    lambda: unit.pid not in (None, first) and unit.state is UnitState.READY), 10)
                assert unit.restarts == 1 and unit.last_exit is not None
            finally:
                await sup.stop_all()
                sup.cancel_tasks()
        sup.close()
        asyncio.get_running_loop().remove_signal_handler(signal.SIGCHLD)
    asyncio.run(main())
