"""A ready unit's crash that the task will answer with a restart at once is forked again in the
exit's own callback (ProcessRun._respawn_now), before the task hears of the exit; the task takes
that process. What the task decides otherwise (a pause, a stop, a backoff) withdraws it."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import os
import signal

import psutil
import pytest
from helpers import gone, supervised, until

from synsup.supervisor.engine import process
from synsup.supervisor.engine.health import Timing
from synsup.supervisor.engine.process import Spawner
from synsup.supervisor.engine.restart_policy import RestartPolicy
from synsup.supervisor.engine.supervisor import Supervisor
from synsup.supervisor.engine.unit_state import UnitState
from synsup.supervisor.spec import UnitSpec

pytestmark = pytest.mark.integration
S = UnitState
FIRST_RUN = "echo 'ValueError: the first run'; exec sleep 60"


class WatchedSpawner(Spawner):
    """Says in which state of its unit each fork came (READY: from the exit's callback), and may
    act right after a fork, before the loop runs again."""

    def __init__(self) -> None:
        super().__init__()
        self.forks: list[tuple[UnitState, int]] = []
        self.after_fork = None

    def spawn_now(self, spec, env, output):
        unit = self.unit
        state = unit.state
        child = super().spawn_now(spec, env, output)
        self.forks.append((state, child.pid))
        if self.after_fork is not None:
            self.after_fork(unit, child)
        return child


def run(tmp_path, scenario, argv=("sh", "-c", FIRST_RUN), stable_after=0.0):
    spawner = WatchedSpawner()

    async def main():
        sup = Supervisor([UnitSpec(name="u", argv=argv, notify=False)], log_dir=str(tmp_path), notify_dir=None,
                         spawner=spawner, timing=Timing(notify_grace=0.0),
                         policy=lambda: RestartPolicy(stable_after=stable_after))
        spawner.unit = sup.units["u"]
        await supervised(sup, lambda sup: scenario(sup.units["u"], spawner))
    asyncio.run(main())
    process.REAPER.reap()


def test_a_stable_unit_that_crashes_is_forked_again_before_its_task_hears_of_the_exit(tmp_path):
    async def scenario(unit, spawner):
        await until(lambda: unit.state is S.READY, "ready")
        first = unit.pid

        def second_run_writes_at_once(unit, child):  # its first line before the task looks at the exit
            with open(tmp_path / "u.log", "a") as f:
                f.write("RuntimeError: the second run\n")
        spawner.after_fork = second_run_writes_at_once
        os.kill(first, signal.SIGKILL)
        await until(lambda: unit.pid not in (None, first) and unit.state is S.READY, "restarted")
        assert [state for state, _ in spawner.forks] == [S.STARTING, S.READY], "the restart forked in the exit's callback"
        assert unit.pid == spawner.forks[1][1] and unit.restarts == 1
        assert unit.last_exit.signal == "SIGKILL"
        assert "the first run" in unit.error and "second" not in unit.error, unit.error
        log = (tmp_path / "u.log").read_text()
        assert log.index(f"pid {first} killed by SIGKILL") < log.index(f"started pid {unit.pid}"), log
    run(tmp_path, scenario)


def test_a_crash_that_backs_off_forks_nothing_early(tmp_path):
    async def scenario(unit, spawner):
        await until(lambda: unit.state is S.READY, "ready")
        os.kill(unit.pid, signal.SIGKILL)
        await until(lambda: unit.state is S.BACKOFF, "backing off")
        assert [state for state, _ in spawner.forks] == [S.STARTING] and unit.pid is None
    run(tmp_path, scenario, stable_after=3600.0)


def test_a_pause_between_the_early_fork_and_the_task_withdraws_the_new_process(tmp_path):
    """The task decides after the fork (a pause came in the same turn of the loop): the process
    it will not take is killed and reaped, and the unit waits for `resume` with no process."""
    async def scenario(unit, spawner):
        await until(lambda: unit.state is S.READY, "ready")
        spawner.after_fork = lambda unit, child: unit.unpaused.clear()
        os.kill(unit.pid, signal.SIGKILL)
        await until(lambda: unit.waiting_for_resume, "waiting for resume")
        withdrawn = spawner.forks[-1][1]
        assert spawner.forks[-1][0] is S.READY and unit.state is S.EXITED and unit.pid is None
        await until(lambda: gone(withdrawn), "the withdrawn process reaped")
        spawner.after_fork = None
        unit.unpaused.set()
        await until(lambda: unit.state is S.READY and unit.pid is not None, "resumed")
        assert unit.pid != withdrawn and [s for s, _ in spawner.forks] == [S.STARTING, S.READY, S.STARTING]
    run(tmp_path, scenario)


def test_a_stop_asked_right_after_the_early_fork_leaves_no_process(tmp_path):
    forked = []

    async def scenario(unit, spawner):
        await until(lambda: unit.state is S.READY, "ready")

        def stop_now(unit, child):
            forked.append(child.pid)
            asyncio.ensure_future(unit.stop())
        spawner.after_fork = stop_now
        os.kill(unit.pid, signal.SIGKILL)
        await until(lambda: unit.state is S.STOPPED and forked, "stopped")
        await until(lambda: gone(forked[0]), "the early fork reaped")
        assert unit.pid is None
    run(tmp_path, scenario)


def test_a_reexec_in_the_turns_before_the_task_takes_the_early_fork_leaves_no_process_unrecorded(tmp_path):
    """hand_over writes units.json for the new image to adopt from; a process forked early and
    not yet the unit's would be in no record: neither adopted nor killed by the new image."""
    seen = {}

    async def scenario(unit, spawner):
        await until(lambda: unit.state is S.READY, "ready")

        def hand_over_next_turn(unit, child):
            spawner.after_fork = None  # the early fork only

            def hand_over():  # what Daemon.hand_over does before the exec, in the next turn
                seen["pid"] = child.pid
                unit.withdraw_prespawned()
                seen["unit_pid"] = unit.pid
            asyncio.get_running_loop().call_soon(hand_over)
        spawner.after_fork = hand_over_next_turn
        os.kill(unit.pid, signal.SIGKILL)
        await until(lambda: "pid" in seen, "handed over")
        await until(lambda: gone(seen["pid"]), "the early fork reaped")
        await until(lambda: unit.state is S.READY and unit.pid not in (None, seen["pid"]), "started anew")
    run(tmp_path, scenario)


def test_hand_over_withdraws_every_early_fork(tmp_path):
    from synsup.supervisor.daemon.daemon import Daemon
    from synsup.supervisor.source import Loaded
    from synsup.supervisor.statedir import StateDir
    withdrawn = []
    daemon = Daemon(Loaded([]), StateDir(str(tmp_path / "s")), str(tmp_path / "logs"))

    class Units:
        units = {"a": type("U", (), {"withdraw_prespawned": lambda self: withdrawn.append("a")})()}
    daemon.supervisor = Units()  # type: ignore[assignment]
    daemon.records.write_units = lambda sup: withdrawn.append("records")  # type: ignore[method-assign]
    daemon.hand_over()
    assert withdrawn == ["a", "records"], "withdrawn before units.json is written"


def test_a_spec_set_before_the_task_takes_the_early_fork_is_the_one_the_restart_runs(tmp_path):
    """A reload gives the unit a new spec (Supervisor.set_spec) for its next start: a process
    forked early with the old one is withdrawn, and the new spec is spawned."""
    new_argv = ("sh", "-c", "exec sleep 61")

    async def scenario(unit, spawner):
        await until(lambda: unit.state is S.READY, "ready")

        def reload_next_turn(unit, child):
            spawner.after_fork = None
            new = dataclasses.replace(unit.spec, argv=new_argv)
            asyncio.get_running_loop().call_soon(setattr, unit, "spec", new)
        spawner.after_fork = reload_next_turn
        os.kill(unit.pid, signal.SIGKILL)
        await until(lambda: unit.state is S.READY and unit.pid is not None and unit.spec.argv == new_argv
                    and psutil.Process(unit.pid).cmdline()[:2] == ["sleep", "61"], "the new spec runs")
        early = spawner.forks[1][1]
        await until(lambda: gone(early), "the early fork withdrawn")
    run(tmp_path, scenario)


def test_a_failure_after_the_early_fork_leaves_no_process_behind(tmp_path, monkeypatch):
    """No pidfd for the new process (EMFILE): it is killed, not left beside the one the task forks."""
    failed = {}

    async def scenario(unit, spawner):
        await until(lambda: unit.state is S.READY, "ready")
        first = unit.pid
        real = os.pidfd_open

        def no_pidfd(pid, *args):
            if not failed:
                failed["pid"] = pid
                raise OSError(errno.EMFILE, "Too many open files")
            return real(pid, *args)
        monkeypatch.setattr(process.os, "pidfd_open", no_pidfd)
        os.kill(first, signal.SIGKILL)
        await until(lambda: unit.state is S.READY and unit.pid not in (None, first), "restarted")
        assert unit.pid != failed["pid"]
        await until(lambda: gone(failed["pid"]), "the process without a pidfd killed and reaped")
    run(tmp_path, scenario)


def test_the_ended_runs_lines_are_its_own_and_none_once_the_log_was_truncated(tmp_path):
    from synsup.supervisor.engine.unit_output import UnitOutput
    output = UnitOutput(str(tmp_path / "u.log"))
    with open(tmp_path / "u.log", "w") as f:
        f.write("an earlier run\n")
    output.new_run()
    with open(tmp_path / "u.log", "a") as f:
        f.write("ValueError: the ended run\n")
    ended = output.ended_run()
    output.new_run()  # its successor's run begins, and writes at once
    with open(tmp_path / "u.log", "a") as f:
        f.write("RuntimeError: the next run\n")
    assert output.last(40, ended) == ["ValueError: the ended run"]
    output._copy_truncate()  # rotated before the exit was looked at: its lines are in u.log.1
    with open(tmp_path / "u.log", "a") as f:
        f.write("RuntimeError: the next run, after the rotation\n")
    assert output.last(40, ended) == []
    output.close()
