"""The window of a batched spawn (Spawner.spawn -> _fork_asked): a process is forked in one turn
of the loop, its task does its bookkeeping in a later one. Whatever the loop runs between the
two must not lose nor misfile anything of the new process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time

import psutil
from helpers import gone, supervised, until

from synsup.supervisor.engine import process
from synsup.supervisor.engine.child_stops import CHILD_STOPS
from synsup.supervisor.engine.health import Timing
from synsup.supervisor.engine.process import Spawner
from synsup.supervisor.engine.supervisor import Supervisor
from synsup.supervisor.engine.unit_state import UnitState
from synsup.supervisor.spec import UnitSpec

S = UnitState
SAY_READY = ("import os, socket, time; "
             "socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'READY=1', os.environ['NOTIFY_SOCKET']); "
             "open(os.environ['SAID'], 'w').close(); time.sleep(30)")


def run(tmp_path, specs, spawner, scenario, notify_dir=None, timing=None, before_start=None):
    async def main():
        sup = Supervisor(specs, log_dir=str(tmp_path), notify_dir=notify_dir, spawner=spawner,
                         timing=timing or Timing(notify_grace=0.0))
        if before_start is not None:
            before_start(sup)
        await supervised(sup, scenario)
    asyncio.run(main())
    process.REAPER.reap()


class LongBatch(Spawner):
    """A batch of forks that takes a while (500 units: 0.25 s), by the end of which the first
    child has exec'd and said READY=1; and another unit's notify message reached the socket as
    this unit asked for its fork (so the socket is read in the turn of the forks)."""

    def __init__(self, said: str) -> None:
        super().__init__()
        self.said = said

    async def spawn(self, spec, env, output, **kw):
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as other:
            other.sendto(b"STATUS=another unit's news", env["NOTIFY_SOCKET"])
        return await super().spawn(spec, env, output, **kw)

    def spawn_now(self, spec, env, output):
        child = super().spawn_now(spec, env, output)
        deadline = time.monotonic() + 10
        while not os.path.exists(self.said) and time.monotonic() < deadline:
            time.sleep(0.002)  # the rest of the batch's forks
        return child


def test_a_ready_1_sent_during_the_batch_of_forks_is_heard(tmp_path, short_dir):
    """READY=1 of a process forked early in a batch, read by the notify socket's callback that
    comes after the forks in the same turn (before its task heard of its pid), was dropped as
    no unit's: a unit that waits for READY=1 was killed at its start timeout."""
    said = os.path.join(short_dir, "said")
    spec = UnitSpec(name="u", argv=(sys.executable, "-c", SAY_READY), notify=True, ready_notify=True,
                    start_timeout=3.0, env=(("SAID", said),))

    async def scenario(sup):
        unit = sup.units["u"]
        await until(lambda: unit.state is S.READY or (unit.error or "").startswith("not ready"), "ready or timed out")
        assert unit.state is S.READY, unit.error
    run(tmp_path, [spec], LongBatch(said), scenario, notify_dir=short_dir)


class AfterFork(Spawner):
    """Runs `after(child)` in a callback queued right after each fork: what the loop runs
    between a batch's forks and the wakeup of their tasks (a control request's task, a signal's
    handler, queued before the wakeups)."""

    def __init__(self) -> None:
        super().__init__()
        self.after = None
        self.forked: list[int] = []

    def spawn_now(self, spec, env, output):
        child = super().spawn_now(spec, env, output)
        self.forked.append(child.pid)
        if self.after is not None:
            asyncio.get_running_loop().call_soon(self.after, child)
        return child


def test_a_reexec_right_after_a_batch_of_forks_records_every_forked_process(tmp_path):
    """Daemon.hand_over writes units.json for the new image to adopt from, after the last await
    of `reexec`. A process forked in the turn before, its task not yet woken, was in no record
    (unit.pid still None): the new image neither adopts nor kills it, and starts the unit anew
    beside it."""
    from synsup.supervisor.daemon.records import Records
    from synsup.supervisor.statedir import StateDir

    os.makedirs(tmp_path / "state")
    records = Records(StateDir(str(tmp_path / "state")))
    spawner = AfterFork()
    recorded = {}

    def reexec_after_the_fork(sup):
        def hand_over(child):  # what Daemon.hand_over does before the exec
            spawner.after = None
            for unit in sup.units.values():
                unit.withdraw_prespawned()
            records.write_units(sup)
            with open(records.state.units_file) as f:
                recorded["units"] = json.load(f)
        spawner.after = hand_over

    async def scenario(sup):
        await until(lambda: recorded, "handed over")
        forked = spawner.forked[0]
        assert recorded["units"].get("u", {}).get("pid") == forked, f"forked {forked}, recorded {recorded}"
    spec = UnitSpec(name="u", argv=("sleep", "30"), notify=False)
    run(tmp_path, [spec], spawner, scenario, before_start=reexec_after_the_fork)
    assert all(gone(pid) for pid in spawner.forked)


def test_a_stop_of_a_process_forked_in_a_batch_is_not_lost_before_its_task_wakes(tmp_path):
    """A unit without probes learns that its process stopped (SIGSTOP) from SIGCHLD
    (child_stops): waitid hands each stop out once. A SIGCHLD handled between the batch's forks
    and the task's `_watch_stops` took the stop for no listener: the stopped process stayed
    `ready` for good."""
    def stop_it(child):
        os.kill(child.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while psutil.Process(child.pid).status() != psutil.STATUS_STOPPED and time.monotonic() < deadline:
            time.sleep(0.001)
        return child

    class StoppedAtOnce(AfterFork):
        def spawn_now(self, spec, env, output):
            child = stop_it(super().spawn_now(spec, env, output))
            asyncio.get_running_loop().call_soon(CHILD_STOPS.collect)  # the daemon's SIGCHLD handler
            return child
    spawner = StoppedAtOnce()

    async def scenario(sup):
        unit = sup.units["u"]
        await until(lambda: unit.state is S.READY, "ready")
        first = unit.pid
        await until(lambda: unit.pid != first or unit.state is not S.READY or "stopped" in (unit.health or ""),
                    "the stop noticed", timeout=3.0)
    spec = UnitSpec(name="u", argv=("sleep", "30"), notify=False)
    run(tmp_path, [spec], spawner, scenario,
        timing=Timing(notify_grace=0.0, liveness_interval=0.05, failure_threshold=1))
    assert all(gone(pid) for pid in spawner.forked)


class Interrupted(BaseException):
    """Not an Exception: what a KeyboardInterrupt, a SystemExit or a CancelledError is to code
    that catches Exception. Raised out of a loop callback it is logged and the loop goes on."""


def test_a_spawn_interrupted_by_a_base_exception_leaves_no_other_spawn_of_its_batch_waiting(tmp_path):
    """The batch was taken out of the spawner before its forks: the spawns after the one that
    raised were never forked nor answered, their tasks waited for ever (and a stop of their
    units with them)."""
    class Raises(Spawner):
        def spawn_now(self, spec, env, output):
            if spec.name == "b":
                raise Interrupted()
            return super().spawn_now(spec, env, output)
    spawner = Raises()
    specs = [UnitSpec(name=n, argv=("sleep", "30"), notify=False) for n in ("a", "b", "c")]
    pids = []

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda loop, context: None)  # the interruption, logged by the loop
        sup = Supervisor(specs, log_dir=str(tmp_path), notify_dir=None, spawner=spawner, timing=Timing(notify_grace=0.0))
        async with asyncio.TaskGroup() as group:
            sup.spawn_tasks(group)
            try:
                sup.start_all()
                units = sup.units
                try:
                    await until(lambda: units["a"].pid and units["c"].pid and units["b"].state is S.FAILED,
                                "a and c spawned, b failed", timeout=5.0)
                finally:
                    pids.extend(u.pid for u in units.values() if u.pid)
            finally:
                try:
                    await asyncio.wait_for(sup.stop_all(), 5)
                except TimeoutError:
                    pass  # a unit whose spawn is never answered never stops
                sup.cancel_tasks()
        sup.close()
    try:
        asyncio.run(main())
    finally:
        process.REAPER.kill_all()
    assert all(gone(pid) for pid in pids)


def test_a_spawner_left_with_a_batch_by_a_closed_loop_still_spawns_in_the_next_one(tmp_path):
    """The fork of a batch is a callback of the loop that asked for it: a loop closed before
    running it (run_until_complete, then close) left the batch in the spawner, and every later
    spawn, in any loop, joined it and was never forked."""
    from synsup.supervisor.engine.unit_output import UnitOutput
    spawner = Spawner()
    spec = UnitSpec(name="u", argv=("sleep", "30"), notify=False)
    env = {"PATH": os.environ["PATH"]}
    output = UnitOutput(str(tmp_path / "u.log"))

    async def ask_and_return():
        asyncio.ensure_future(spawner.spawn(spec, env, output))  # asked; its fork due next turn
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(lambda loop, context: None)  # "Task was destroyed but it is pending"
    loop.run_until_complete(ask_and_return())
    loop.close()

    async def spawn_again():
        async with asyncio.timeout(5):
            child = await spawner.spawn(spec, env, output)
        child.force_close()
        return child.pid
    pid = asyncio.run(spawn_again())
    output.close()
    deadline = time.monotonic() + 5
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert gone(pid)
