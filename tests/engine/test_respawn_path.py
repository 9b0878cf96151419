"""What a crash restart does between the exit and the new fork stays O(1) in the number of
units: a unit that went down makes the daemon degraded without a look at every unit (py-spy
of crash -> new child with 500 units: Daemon.settle scanned all of them on every change)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from types import SimpleNamespace

from fakes import run_supervisor, until
from helpers import wait_for

from synsup.supervisor.daemon.daemon import Daemon
from synsup.supervisor.engine import process, reaper
from synsup.supervisor.engine.health import Timing
from synsup.supervisor.engine.unit import Unit
from synsup.supervisor.engine.unit_output import UnitOutput
from synsup.supervisor.engine.unit_state import UnitState
from synsup.supervisor.source import Loaded
from synsup.supervisor.spec import UnitSpec
from synsup.supervisor.statedir import StateDir

S = UnitState


class EveryUnitLookedAt(Exception):
    pass


def refuse_scans():
    raise EveryUnitLookedAt


def test_a_unit_going_down_settles_degraded_without_scanning_the_others(tmp_path):
    daemon = Daemon(Loaded([]), StateDir(str(tmp_path / "s")), str(tmp_path / "logs"))
    daemon.supervisor = SimpleNamespace(all_ready=refuse_scans)  # type: ignore[assignment]
    down = SimpleNamespace(state=UnitState.BACKOFF, held=False)
    daemon.settle(down)  # type: ignore[arg-type]
    assert daemon.lifecycle.phase.value == "degraded"


def test_a_ready_unit_whose_process_exited_settles_degraded_without_scanning_the_others(tmp_path):
    """py-spy of crash -> new child with 500 units: the exit's change still saw the unit `ready`
    (its state changes after), so the daemon looked at all 500 before the fork."""
    daemon = Daemon(Loaded([]), StateDir(str(tmp_path / "s")), str(tmp_path / "logs"))
    daemon.supervisor = SimpleNamespace(all_ready=refuse_scans)  # type: ignore[assignment]
    exited = SimpleNamespace(state=UnitState.READY, held=False, child=SimpleNamespace(exited=True))
    daemon.settle(exited)  # type: ignore[arg-type]
    assert daemon.lifecycle.phase.value == "degraded"


def test_sigchld_looks_at_every_child_once_a_burst_after_the_respawn(monkeypatch):
    """A unit's exit comes by its pidfd; the SIGCHLD of the same exit made the reaper read every
    child's /proc entry before the unit's task could fork its successor."""
    looks = []
    monkeypatch.setattr(reaper, "direct_children", lambda: looks.append(1) or [])
    monkeypatch.setattr(reaper, "_zombie_child", lambda: True)  # something to reap after the burst

    async def burst():
        for _ in range(3):
            Daemon._on_sigchld()
        assert looks == [], "no look at the children on the way to a respawn"
        deadline = time.monotonic() + 10
        while not looks and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(reaper.REAP_AFTER * 2)
        assert looks == [1], "one look for the burst"
    asyncio.run(burst())


def test_a_sigchld_whose_exit_was_reaped_already_reads_no_child_list(monkeypatch):
    """Most SIGCHLDs are a unit's exit, its leader reaped at once by its Child: the look 50 ms
    later read 500 children's pids (0.4 ms) and met the next crash; one waitid now says there
    is nothing to reap. A zombie that is no unit's leader is still found and reaped."""
    looks = []
    children = reaper.direct_children
    monkeypatch.setattr(reaper, "direct_children", lambda: looks.append(1) or children())
    own = reaper.Reaper()  # no leftovers of other tests
    subprocess.run(["true"], check=True)  # exited and reaped: no zombie left
    if not reaper._zombie_child():  # (another test's zombie would make the look due)
        own.reap()
        assert looks == []
    zombie = subprocess.Popen(["true"], start_new_session=True)  # not the daemon's own session
    try:
        wait_for(lambda: state_of(zombie.pid) == "Z", timeout=10, what="the child to exit unreaped")
        looks.clear()
        own.reap()
        assert looks == [1]
        assert state_of(zombie.pid) is None, "the zombie is reaped"
    finally:
        zombie.returncode = 0  # reaped by the reaper: Popen must not wait for it again


def state_of(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except OSError:
        return None


def test_a_crash_restart_with_its_dependencies_ready_waits_for_nothing(tmp_path, monkeypatch):
    """The respawn raced a wait for dependencies that were ready all along (two tasks and a few
    turns of the loop between an exit and the fork)."""
    async def scenario(sup, clock, spawner):
        a, b = sup.units["a"], sup.units["b"]
        sup.start_all()
        await until(lambda: a.state is S.READY and b.state is S.READY)
        waits = []
        waited = Unit.ready_or_held
        monkeypatch.setattr(Unit, "ready_or_held", lambda u: (waits.append(1) if u is a else None) or waited(u))
        clock.advance(61)
        first = b.child
        first.exit(1)
        await until(lambda: b.child is not first and b.state is S.READY)
        assert b.restarts == 1 and waits == []
        await sup.stop_all()
    specs = [UnitSpec(name="a", argv=("fake", "a"), notify=False),
             UnitSpec(name="b", argv=("fake", "b"), dependencies=("a",), step=1, notify=False)]
    run_supervisor(scenario, specs, tmp_path, Timing(liveness_interval=None, notify_grace=0.0))


def test_descendants_that_left_the_group_are_looked_for_after_the_exit_not_before_the_respawn(tmp_path, monkeypatch):
    """py-spy and strace of crash -> new child with 500 units: reading every child's /proc entry
    for escaped descendants took 0.4 ms between the exit and the next fork."""
    looks = []
    monkeypatch.setattr(process, "direct_children", lambda: looks.append("look") or [])

    async def main():
        output = UnitOutput(str(tmp_path / "u.log"))
        popen = subprocess.Popen(["true"], start_new_session=True)
        child = process.Child(popen, "u", output)
        await child.wait()
        assert looks == [], "the exit is handed on before any look at the other children"
        assert child in process.REAPER.escaped_due
        deadline = time.monotonic() + 10
        while not looks and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert looks == ["look"] and child not in process.REAPER.escaped_due
        output.close()
    asyncio.run(main())


def test_a_daemon_stopping_at_once_still_looks_for_escaped_descendants(tmp_path, monkeypatch):
    looks = []
    monkeypatch.setattr(process.REAPER, "escaped_due", set())  # not those of earlier tests' loops
    monkeypatch.setattr(process, "direct_children", lambda: looks.append("look") or [])

    async def main():
        output = UnitOutput(str(tmp_path / "u.log"))
        child = process.Child(subprocess.Popen(["true"], start_new_session=True), "u", output)
        await child.wait()
        process.REAPER.kill_all()  # the daemon's last step, before the scheduled look
        assert looks == ["look"] and not process.REAPER.escaped_due
        output.close()
    asyncio.run(main())


class SaidLog:
    """A unit's logger that puts each event in the story."""

    def __init__(self, story: list[tuple]) -> None:
        self.story = story

    def __getattr__(self, level: str):
        return lambda event, **fields: self.story.append(("log", event))


def crash_story(tmp_path, crash_after: float) -> tuple[list[tuple], str]:
    """b crashes `crash_after` s after it was ready: the daemon log's events, the listeners'
    calls and the fork, in the order they came; b's unit log."""
    story: list[tuple] = []

    async def scenario(sup, clock, spawner):
        b = sup.units["b"]
        fork = spawner.spawn

        async def forked(spec, env, output):
            story.append(("fork",))
            return await fork(spec, env, output)
        spawner.spawn = forked
        sup.add_listener(lambda unit: story.append(("change", unit.state.value, unit.last_exit is not None))
                         if unit is b else None)
        sup.start_all()
        await until(lambda: b.state is S.READY)
        clock.advance(crash_after)
        story.clear()
        first = b.child
        b.log = SaidLog(story)
        first.exit(1)
        await until(lambda: b.child is not first)
        await until(lambda: b.state is S.READY)
        await sup.stop_all()

    specs = [UnitSpec(name="b", argv=("fake", "b"), notify=False)]
    run_supervisor(scenario, specs, tmp_path, Timing(liveness_interval=None, notify_grace=0.0))
    with open(tmp_path / "b.log") as f:
        return story, f.read()


def test_a_crash_restart_forks_first_then_says_the_exit_in_the_order_it_came(tmp_path):
    """Half a millisecond between a crash and its restart went to the exit's note in the unit
    log, its log line, the `starting` line and the listeners: said after the fork now."""
    story, unit_log = crash_story(tmp_path, crash_after=61)
    assert story[0] == ("fork",), story
    said = [entry for entry in story if entry[0] == "log"]
    assert said[:3] == [("log", "unit.exited"), ("log", "unit.starting"), ("log", "unit.spawned")], story
    changes = [entry for entry in story if entry[0] == "change"]
    assert changes[0] == ("change", "starting", True), "the listeners learn of the exit with the new run"
    assert unit_log.index("pid 10000 exited with code 1") < unit_log.index("started pid 10001"), unit_log


def test_a_restart_that_backs_off_says_the_exit_before_the_backoff(tmp_path):
    story, unit_log = crash_story(tmp_path, crash_after=1)
    assert story.index(("log", "unit.exited")) < story.index(("log", "unit.backoff")) < story.index(("fork",)), story
    assert ("change", "ready", True) in story[:story.index(("fork",))], "the exit was told before the wait"
    assert unit_log.index("pid 10000 exited with code 1") < unit_log.index("started pid 10001"), unit_log
