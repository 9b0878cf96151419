"""The unit state machine, restarts, backoff and crash loops, with a fake clock and fake children."""

from __future__ import annotations

import asyncio
import signal

from fakes import run_supervisor, until

from synsup.supervisor.engine.unit import Timing
from synsup.supervisor.engine.unit_state import UnitState
from synsup.supervisor.spec import UnitSpec

S = UnitState
TIMING = Timing(liveness_interval=None, notify_grace=0.0)


def spec(name, *deps, step=0):
    return UnitSpec(name=name, argv=("fake", name), dependencies=deps, step=step, notify=False)


def run(scenario, specs, tmp_path):
    run_supervisor(scenario, specs, tmp_path, TIMING)


def test_start_ready_and_stop(tmp_path):
    async def scenario(sup, clock, spawner):
        unit = sup.units["a"]
        history = []
        sup.add_listener(lambda u: history.append(u.state))
        sup.start_all()
        await until(lambda: unit.state is S.READY)
        assert unit.pid == spawner.children[0].pid
        await sup.stop_all()
        assert unit.state is S.STOPPED and unit.pid is None
        assert spawner.children[0].signals == [signal.SIGTERM]
        assert [s for i, s in enumerate(history) if i == 0 or history[i - 1] is not s] == \
            [S.WAITING, S.STARTING, S.READY, S.STOPPING, S.STOPPED]
    run(scenario, [spec("a")], tmp_path)


def test_crash_of_a_stable_unit_restarts_at_once(tmp_path):
    async def scenario(sup, clock, spawner):
        unit = sup.units["a"]
        sup.start_all()
        first = await spawner.next_child()
        await until(lambda: unit.state is S.READY)
        clock.advance(61)
        first.exit(1)
        second = await spawner.next_child()
        assert second.pid != first.pid
        assert clock.sleeps == []
        assert unit.restarts == 1 and unit.last_exit.code == 1
        assert unit.error.startswith("exited with code 1")
        await sup.stop_all()
    run(scenario, [spec("a")], tmp_path)


def test_a_crash_restart_goes_from_its_exit_to_its_fork_unless_it_must_wait(tmp_path):
    """Ready -> starting, no `waiting` between (one state change, its log line and every listener
    less on the way to the fork); a dependency down, or a crash loop's backoff, still waits."""
    async def scenario(sup, clock, spawner):
        a, b = sup.units["a"], sup.units["b"]
        history = []
        sup.add_listener(lambda u: history.append((u.spec.name, u.state)) if u is b else None)
        sup.start_all()
        await until(lambda: b.state is S.READY)
        clock.advance(61)
        history.clear()
        b_child = b.child
        b_child.exit(1)
        await until(lambda: b.state is S.READY and b.pid not in (None, b_child.pid))
        states = [s for _, s in history]
        assert S.STARTING in states and S.WAITING not in states and S.BACKOFF not in states
        history.clear()
        clock.advance(61)
        a_child, b_child = a.child, b.child
        await a.stop()
        b_child.exit(1)  # its dependency is down: it waits
        await until(lambda: b.state is S.WAITING)
        assert a_child.exited and b.pid is None
        await sup.stop_all()
    run(scenario, [spec("a"), spec("b", "a")], tmp_path)


def test_crashes_soon_after_ready_back_off(tmp_path):
    async def scenario(sup, clock, spawner):
        unit = sup.units["a"]
        sup.start_all()
        for _ in range(4):
            child = await spawner.next_child()
            await until(lambda: unit.state is S.READY)
            clock.advance(5)
            child.exit(-9)
        await spawner.next_child()
        assert clock.sleeps == [1.0, 2.0, 4.0, 8.0]
        assert unit.last_exit.signal == "SIGKILL"
        assert unit.error == "killed by SIGKILL"  # no OOM kill counted meanwhile: no guess
        await sup.stop_all()
    run(scenario, [spec("a")], tmp_path)


def test_crash_loop_ends_failed_and_dependents_keep_running(tmp_path):
    async def scenario(sup, clock, spawner):
        a, b = sup.units["a"], sup.units["b"]
        sup.start_all()
        child_a = await spawner.next_child()
        await until(lambda: a.state is S.READY)
        child_b = await spawner.next_child()
        await until(lambda: b.state is S.READY)
        clock.advance(100)
        a._notify_ready.clear()
        # every new start of a dies before it is ready: give it a readiness that never comes
        a.timing = Timing(liveness_interval=None, notify_grace=3600)
        a.spec = UnitSpec(name="a", argv=("fake",), notify=True)
        child_a.exit(1)
        for _ in range(5):
            child = await spawner.next_child()
            child.exit(2)
        await until(lambda: a.state is S.FAILED)
        assert "failed to become ready 5 times in a row" in a.error
        assert clock.sleeps == [1.0, 2.0, 4.0, 8.0]
        assert b.state is S.READY and b.pid == child_b.pid
        await asyncio.sleep(0)
        assert len(spawner.children) == 7  # a failed unit is left alone
        sup.units["a"].timing = TIMING
        sup.units["a"].spec = spec("a")
        await sup.restart(["a"])
        assert a.state is S.READY and a.restarts == 0
        await sup.stop_all()
    run(scenario, [spec("a"), spec("b", "a", step=1)], tmp_path)


def test_dependents_wait_for_dependencies(tmp_path):
    async def scenario(sup, clock, spawner):
        a, b = sup.units["a"], sup.units["b"]
        a.timing = Timing(liveness_interval=None, notify_grace=3600)
        a.spec = UnitSpec(name="a", argv=("fake",), notify=True)
        sup.start_all()
        await spawner.next_child()
        await until(lambda: b.state is S.WAITING and a.state is S.STARTING)
        for _ in range(50):
            await asyncio.sleep(0)
        assert len(spawner.children) == 1 and b.state is S.WAITING
        a._on_notify({"READY": "1"})
        await until(lambda: b.state is S.READY)
        assert len(spawner.children) == 2
        await sup.stop_all()
    run(scenario, [spec("a"), spec("b", "a", step=1)], tmp_path)


def test_stop_runs_in_reverse_step_order(tmp_path):
    async def scenario(sup, clock, spawner):
        order = []
        sup.add_listener(lambda u: order.append(u.spec.name) if u.state is S.STOPPED else None)
        sup.start_all()
        await until(lambda: sup.all_ready())
        await sup.stop_all()
        assert order.index("w1") < order.index("main") < order.index("redis")
        assert order.index("w2") < order.index("main")
    run(scenario, [spec("redis"), spec("main", "redis", step=1), spec("w1", "main", step=2),
                   spec("w2", "main", step=2)], tmp_path)


def test_restart_of_dependency_does_not_restart_dependents(tmp_path):
    async def scenario(sup, clock, spawner):
        sup.start_all()
        await until(lambda: sup.all_ready())
        worker_pid = sup.units["w"].pid
        await sup.restart(["main"])
        assert sup.units["main"].state is S.READY
        assert sup.units["w"].pid == worker_pid
        await sup.stop_all()
    run(scenario, [spec("main"), spec("w", "main", step=1)], tmp_path)


def test_the_error_is_the_exception_the_unit_died_of(tmp_path):
    async def scenario(sup, clock, spawner):
        unit = sup.units["a"]
        sup.start_all()
        child = await spawner.next_child()
        await until(lambda: unit.state is S.READY)
        unit.output.write(b"Traceback (most recent call last):\n  File \"x.py\", line 1\n"
                          b"psycopg2.OperationalError: connection to server at \"127.0.0.1\", port 5432 failed: "
                          b"Connection refused\nMain process exited\n")
        child.exit(1)
        await spawner.next_child()
        assert unit.error == ('exited with code 1: psycopg2.OperationalError: connection to server at "127.0.0.1", '
                              "port 5432 failed: Connection refused")
        await sup.stop_all()
    run(scenario, [spec("a")], tmp_path)


def test_an_error_comes_from_the_last_run_only(tmp_path):
    async def scenario(sup, clock, spawner):
        unit = sup.units["a"]
        sup.start_all()
        first = await spawner.next_child()
        unit.output.write(b"FirstError: from an earlier run\n")
        first.exit(1)
        (await spawner.next_child()).exit(2)
        await spawner.next_child()
        assert unit.error == "exited with code 2" and unit.last_exit.code == 2
        await sup.stop_all()
    run(scenario, [spec("a")], tmp_path)


def test_a_held_dependency_does_not_keep_its_dependents_waiting(tmp_path):
    """Issue 20: after `stop persister1 --force`, a worker that crashed sat in `waiting (for persister1)`."""
    async def scenario(sup, clock, spawner):
        sup.start_all()
        await until(lambda: sup.all_ready())
        await sup.hold(["p1"])
        worker = sup.units["w"]
        clock.advance(61)
        worker.child.exit(1)
        await until(lambda: worker.state is S.READY and worker.restarts == 1, 10_000)
        assert worker.blocked_by is None
        await sup.restart(["w"])
        assert worker.state is S.READY
        await sup.stop_all()
    run(scenario, [spec("main"), spec("p1", "main", step=1), spec("p2", "main", step=1),
                   spec("w", "main", "p1", "p2", step=2)], tmp_path)


def test_a_unit_that_exits_while_paused_shows_exited_paused_not_backoff(tmp_path):
    from synsup.supervisor.cli.render import status_table
    from synsup.supervisor.daemon.status_report import unit_status
    from synsup.supervisor.protocol import StatusReply

    async def scenario(sup, clock, spawner):
        unit = sup.units["a"]
        sup.start_all()
        child = await spawner.next_child()
        await until(lambda: unit.state is S.READY)
        sup.unpaused.clear()
        child.exit(1)
        await until(lambda: unit.waiting_for_resume)
        assert unit.state is S.EXITED and unit.settled and len(spawner.children) == 1
        status = unit_status(unit, clock.time())
        table = status_table(StatusReply.from_json({"daemon": {"paused": True}, "units": [status.as_json()]}),
                             clock.time())
        assert "exited (paused)" in table and "backoff" not in table
        assert status.error == "exited with code 1"
        sup.unpaused.set()
        await spawner.next_child()
        await until(lambda: unit.state is S.READY)
        await sup.stop_all()
    run(scenario, [spec("a")], tmp_path)


def _kill_9_after(tmp_path, monkeypatch, kills_meanwhile, kernel_says=None):
    """A unit killed by SIGKILL while the vmstat counter rose (or not); with `kernel_says`, a
    readable kernel log that then logs that line (`{pid}`: the unit's pid)."""
    from synsup.supervisor.engine import died_of, kernel_log
    vmstat, kmsg = tmp_path / "vmstat", tmp_path / "kmsg"
    vmstat.write_text("pgfault 12\noom_kill 3\n")
    kmsg.write_text("6,1,10,-;Linux version 6.1\n")
    monkeypatch.setattr(died_of, "PROC_VMSTAT", str(vmstat))
    log = kernel_log.KernelLog(str(kmsg if kernel_says is not None else tmp_path / "unreadable"))
    monkeypatch.setattr(kernel_log, "KERNEL_LOG", log)
    errors = []

    async def scenario(sup, clock, spawner):
        unit = sup.units["a"]
        sup.start_all()
        child = await spawner.next_child()
        await until(lambda: unit.state is S.READY)
        unit.output.write(b"2026-12-01 10:00:00,001 - synapse.access.http.8008 - 460 - INFO - GET-1 - "
                          b"127.0.0.1 - 8008 - {None} Processed request: 0.001sec 200 GET /health\n")
        if kills_meanwhile:
            vmstat.write_text("pgfault 12\noom_kill 4\n")
        if kernel_says is not None:
            with open(kmsg, "a") as f:
                f.write(kernel_says.format(pid=child.pid) + "\n")
        child.exit(-signal.SIGKILL)
        await spawner.next_child()
        errors.append(unit.error)
        await sup.stop_all()
    run(scenario, [spec("a")], tmp_path / "logs")
    log.close()
    return errors[0]


def test_sigkill_says_out_of_memory_only_when_the_kernel_killed_for_memory(tmp_path, monkeypatch):
    error = _kill_9_after(tmp_path, monkeypatch, kills_meanwhile=True)
    assert error == "killed by SIGKILL: out of memory (the kernel's OOM killer killed meanwhile: oom_kill rose)"


def test_sigkill_without_an_oom_kill_is_not_blamed_on_memory_nor_on_access_log_lines(tmp_path, monkeypatch):
    error = _kill_9_after(tmp_path, monkeypatch, kills_meanwhile=False)
    assert error == "killed by SIGKILL"


def test_sigkill_the_kernel_log_names_as_an_oom_kill_says_what_the_kernel_said(tmp_path, monkeypatch):
    line = ("3,4711,90871234,-;Out of memory: Killed process {pid} (python3) total-vm:2097152kB, "
            "anon-rss:1834320kB, file-rss:0kB, shmem-rss:0kB, UID:108 pgtables:3800kB oom_score_adj:0")
    error = _kill_9_after(tmp_path, monkeypatch, kills_meanwhile=True, kernel_says=line)
    assert error.startswith("killed by SIGKILL: out of memory (the kernel's log: Out of memory: Killed process ")
    assert error.endswith(" (python3) total-vm:2097152kB)")


def test_sigkill_while_the_kernel_log_names_another_oom_victim_is_not_blamed_on_memory(tmp_path, monkeypatch):
    """The machine-wide counter rose for another process; the kernel log says which one."""
    line = "3,4711,90871234,-;Out of memory: Killed process 1 (other) total-vm:20kB, anon-rss:10kB"
    error = _kill_9_after(tmp_path, monkeypatch, kills_meanwhile=True, kernel_says=line)
    assert error == "killed by SIGKILL"


def test_the_last_lines_stand_for_the_error_only_when_they_are_no_routine_log_lines():
    from synsup.supervisor.engine.died_of import died_of
    routine = ["2026-12-01 10:00:00,001 - synapse.access.http.8008 - 460 - INFO - GET-1 - Processed request",
               "12345:M 01 Dec 2026 10:00:00.000 * Ready to accept connections tcp",
               "2026-12-01 10:00:00.000 UTC [77] LOG:  database system is ready to accept connections"]
    assert died_of(routine) == ""
    assert died_of([*routine, "usage: synapse [-h] --config-path CONFIG_FILE"]) == \
        "usage: synapse [-h] --config-path CONFIG_FILE"
    fatal = "2026-12-01 10:00:00.000 UTC [77] FATAL:  could not bind IPv4 address \"127.0.0.1\""
    assert died_of([fatal, *routine]) == fatal


def test_an_error_is_cleared_once_the_unit_has_been_ready_a_while_and_kept_as_last_error(tmp_path):
    from synsup.supervisor.daemon.status_report import unit_status

    async def scenario(sup, clock, spawner):
        unit = sup.units["a"]
        sup.start_all()
        (await spawner.next_child()).exit(3)
        failed_at = clock.time()
        await spawner.next_child()
        await until(lambda: unit.state is S.READY)
        assert unit.error == "exited with code 3"  # just back: the failure is still news
        clock.advance(61)
        status = unit_status(unit, clock.time())
        assert status.error is None and unit.error is None
        assert status.last_error == "exited with code 3" and status.last_error_at == failed_at
        await sup.stop_all()
    run(scenario, [spec("a")], tmp_path)


def test_a_cleared_error_does_not_come_back_when_the_unit_crashes_later(tmp_path):
    async def scenario(sup, clock, spawner):
        unit = sup.units["a"]
        sup.start_all()
        (await spawner.next_child()).exit(3)
        child = await spawner.next_child()
        await until(lambda: unit.state is S.READY)
        clock.advance(3600)
        child.exit(-signal.SIGTERM)
        await spawner.next_child()
        assert unit.error == "killed by SIGTERM" and unit.last_error == "killed by SIGTERM"
        await sup.stop_all()
    run(scenario, [spec("a")], tmp_path)


def test_a_rolling_restart_takes_one_unit_at_a_time_in_order_and_leaves_redis(tmp_path):
    """Issue 22: `restart --rolling` restarts unit by unit in dependency order, each ready before the
    next stops, and never a unit whose spec does not roll (Redis) unless it is named."""
    specs = [UnitSpec(name="redis", argv=("fake", "redis"), notify=False, rolling=False),
             spec("main", "redis", step=1), spec("w1", "main", step=2), spec("w2", "main", step=2)]

    async def scenario(sup, clock, spawner):
        sup.start_all()
        await until(lambda: sup.all_ready())
        before = {n: u.pid for n, u in sup.units.items()}
        stops = []  # (unit stopping, units not ready at that moment)
        sup.add_listener(lambda u: stops.append((u.spec.name, sorted(n for n, o in sup.units.items()
                                                                     if o.state is not S.READY and o is not u)))
                         if u.state is S.STOPPING else None)
        assert await sup.restart_rolling([]) is None
        assert stops == [("main", []), ("w1", []), ("w2", [])]
        assert sup.units["redis"].pid == before["redis"]
        assert all(sup.units[n].pid != before[n] and sup.units[n].state is S.READY for n in ("main", "w1", "w2"))
        stops.clear()
        assert await sup.restart_rolling(["redis"]) is None and stops == [("redis", [])]  # named: it rolls
        await sup.stop_all()
    run(scenario, specs, tmp_path)


def test_a_rolling_restart_halts_at_the_first_unit_not_ready_again(tmp_path):
    async def scenario(sup, clock, spawner):
        sup.start_all()
        for _ in range(3):
            await spawner.next_child()
        await until(lambda: sup.all_ready())
        w2_pid = sup.units["w2"].pid
        rolling = asyncio.ensure_future(sup.restart_rolling([]))
        await spawner.next_child()  # main, again: ready
        for _ in range(5):  # w1 dies at every start
            (await spawner.next_child()).exit(1)
        assert await rolling == "w1"
        assert sup.units["w1"].state is S.FAILED
        assert sup.units["w2"].pid == w2_pid  # after the halt: not restarted
        await sup.stop_all()
    run(scenario, [spec("main"), spec("w1", "main", step=1), spec("w2", "main", step=2)], tmp_path)


def reported(name):
    """A stand-in for a unit another daemon runs (multi-host): its readiness is reported, never probed."""
    return UnitSpec(name=name, argv=None, reported=True, notify=False)


def test_a_unit_waits_for_a_reported_dependency_and_follows_its_reports(tmp_path):
    async def scenario(sup, clock, spawner):
        remote, local = sup.units["main"], sup.units["w"]
        sup.start_all()
        await until(lambda: local.state is S.WAITING and remote.state is S.STARTING)
        for _ in range(50):
            await asyncio.sleep(0)
        assert spawner.children == [] and remote.pid is None, "nothing starts before main is reported ready"
        remote.report(True)
        child = await spawner.next_child()
        await until(lambda: local.state is S.READY and remote.state is S.READY)
        remote.report(False)
        await until(lambda: remote.state is S.UNHEALTHY)
        assert local.state is S.READY and not child.exited, "a running dependent is left alone"
        clock.advance(61)
        child.exit(1)
        await until(lambda: local.state is S.WAITING)
        for _ in range(50):
            await asyncio.sleep(0)
        assert len(spawner.children) == 1, "a crash restart waits for main to be reported ready again"
        remote.report(True)
        await spawner.next_child()
        await until(lambda: local.state is S.READY)
        await sup.stop_all()
        assert remote.state is S.STOPPED and clock.sleeps == [], "no probe and no timer for a reported unit"
    run(scenario, [reported("main"), spec("w", "main", step=1)], tmp_path)


def test_a_reported_unit_never_times_out_into_failed(tmp_path):
    async def scenario(sup, clock, spawner):
        remote = sup.units["main"]
        sup.start_all()
        await until(lambda: remote.state is S.STARTING)
        clock.advance(remote.spec.start_timeout * 10)
        for _ in range(50):
            await asyncio.sleep(0)
        assert remote.state is S.STARTING and remote.failed_attempts == 0
        await sup.stop_all()
    run(scenario, [reported("main")], tmp_path)


def test_before_stop_runs_first_for_a_ready_unit_and_a_failing_hook_never_keeps_it_running(tmp_path):
    seen = []

    async def hook(unit):
        seen.append((unit.spec.name, unit.state, unit.pid is not None))
        raise RuntimeError("a bug in the hook")

    async def scenario(sup, clock, spawner):
        sup.set_before_stop(hook)
        sup.start_all()
        await until(lambda: sup.units["a"].state is S.READY)
        await sup.restart(["a"])
        assert sup.units["a"].state is S.READY and spawner.children[0].exited and len(spawner.children) == 2
        await sup.units["a"].stop()

    run(scenario, [spec("a")], tmp_path)
    assert seen == [("a", S.READY, True), ("a", S.READY, True)]  # before each stop, with the process running


def awaited_chain(task: asyncio.Task) -> list[str]:
    """What a task waits on, outermost first: coroutine names, then the future at the end."""
    chain, awaited = [], task.get_coro()
    while awaited is not None:
        chain.append(getattr(awaited, "__qualname__", type(awaited).__name__))
        awaited = getattr(awaited, "cr_await", None)
    return chain


def test_a_ready_unit_races_its_exit_on_one_future_not_asyncio_wait():
    """500 waiting units held 500 asyncio.wait coroutines, two sets each and a closure per
    future (0.6 MB); the race is one future woken by whichever comes first."""
    async def scenario(sup, clock, spawner):
        unit = sup.units["a"]
        sup.start_all()
        await until(lambda: unit.state is S.READY)
        supervise = next(t for t in asyncio.all_tasks() if t.get_name() == "unit:a")
        chain = awaited_chain(supervise)
        assert chain[-2:] == ["race", "FutureIter"], chain  # awaiting a bare future
        unit.child.exit(0)  # the exit wins the race: restarted
        await until(lambda: unit.restarts == 1 and unit.state is S.READY)
        await sup.stop_all()
        assert unit.state is S.STOPPED
    spec = UnitSpec(name="a", argv=("fake", "a"), notify=False)
    run_supervisor(scenario, [spec], "/nonexistent", Timing(notify_grace=0.0))
