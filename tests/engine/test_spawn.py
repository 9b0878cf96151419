"""A unit's process from posix_spawn (spawn.py) gets what Popen gave it: its own session, no
descriptor of the daemon's, default SIGPIPE, no blocked signal, its stdin bytes, its PATH."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from synsup.supervisor.engine import spawn as spawn_module
from synsup.supervisor.engine.process import Spawned, Spawner
from synsup.supervisor.engine.unit_output import UnitOutput
from synsup.supervisor.spec import UnitSpec


def only_standard_descriptors(pid: int) -> None:
    """Right after the exec the dynamic loader holds a library open for a moment (fd 3): a
    descriptor the unit inherited stays, so the listing must come down to stdin, out and err."""
    def listing():
        return sorted(int(fd) for fd in os.listdir(f"/proc/{pid}/fd"))
    deadline = time.monotonic() + 5.0
    while listing() != [0, 1, 2] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert listing() == [0, 1, 2], {fd: os.readlink(f"/proc/{pid}/fd/{fd}") for fd in listing()}


def status_mask(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1], 16)
    raise AssertionError(field)


def wait_for(condition, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, what
        time.sleep(0.01)
    return value


def spawned(tmp_path, spec: UnitSpec, scenario) -> None:
    async def main():
        output = UnitOutput(str(tmp_path / f"{spec.name}.log"))
        child = await Spawner().spawn(spec, {"PATH": os.environ["PATH"]}, output)
        try:
            await asyncio.to_thread(scenario, child, output)
        finally:
            child.signal_group(signal.SIGKILL)
            await child.wait()
            output.close()
    asyncio.run(main())


def test_no_descriptor_of_the_daemon_reaches_a_unit_not_even_one_it_inherited(tmp_path):
    inherited = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(inherited, True)  # as from a shell or a service manager
    try:
        def scenario(child, output):
            only_standard_descriptors(child.pid)
            assert os.readlink(f"/proc/{child.pid}/fd/1") == str(tmp_path / "u.log")
            assert os.getsid(child.pid) == child.pid  # a session, so a group, of its own
            assert status_mask(child.pid, "SigIgn") & (1 << (signal.SIGPIPE - 1)) == 0  # Python ignores it
            assert status_mask(child.pid, "SigBlk") == 0
        spawned(tmp_path, UnitSpec(name="u", argv=("sleep", "30")), scenario)
    finally:
        os.close(inherited)


def test_a_unit_reads_its_stdin_bytes_then_eof(tmp_path):
    def scenario(child, output):
        wait_for(lambda: b"port 6379\nbind 127.0.0.1" in (tmp_path / "u.log").read_bytes(), "cat's output")
        wait_for(lambda: child.exited, "cat exits at EOF")
    spawned(tmp_path, UnitSpec(name="u", argv=("cat",), stdin=b"port 6379\nbind 127.0.0.1"), scenario)


def test_a_bare_name_is_found_on_the_units_path_not_the_daemons(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "not-a-dir").mkdir()
    program = bin_dir / "hello-unit"
    program.write_text("#!/bin/sh\necho hello from $0\nexec sleep 30\n")
    program.chmod(0o755)
    env = {"PATH": f"{tmp_path / 'nothing'}:{bin_dir}:/usr/bin:/bin"}
    assert spawn_module.executable("hello-unit", env) == str(program)
    assert spawn_module.executable("/bin/sh", {}) == "/bin/sh"
    with pytest.raises(FileNotFoundError):
        spawn_module.executable("hello-unit", {"PATH": "/usr/bin:/bin"})
    with pytest.raises(PermissionError):  # as Popen: execve of a directory is EACCES
        spawn_module.executable("not-a-dir", env)

    async def main():
        output = UnitOutput(str(tmp_path / "u.log"))
        child = await Spawner().spawn(UnitSpec(name="u", argv=("hello-unit",)), env, output)
        try:
            await asyncio.to_thread(wait_for, lambda: b"hello from" in (tmp_path / "u.log").read_bytes(), "output")
        finally:
            child.signal_group(signal.SIGKILL)
            await child.wait()
            output.close()
    asyncio.run(main())


def test_an_exec_that_fails_is_an_oserror_and_leaves_no_descriptor(tmp_path):
    script = tmp_path / "no-interpreter"
    script.write_text("#!/nonexistent/interpreter\n")
    script.chmod(0o755)
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError):
        spawn_module.spawn((str(script),), {}, None, b"some stdin")
    spawn_module.devnull()  # kept open on purpose, once
    assert set(os.listdir("/proc/self/fd")) - before <= {str(spawn_module.devnull())}


def test_a_unit_with_a_working_directory_runs_in_it(tmp_path):
    def scenario(child, output):
        wait_for(lambda: os.readlink(f"/proc/{child.pid}/cwd") == str(tmp_path), "its cwd")
        only_standard_descriptors(child.pid)
    spawned(tmp_path, UnitSpec(name="u", argv=("sleep", "30"), cwd=str(tmp_path)), scenario)


def test_spawned_is_what_child_reads_of_a_popen():
    started = Spawned(123)
    assert (started.pid, started.returncode, started.stdout, started.stdin) == (123, None, None, None)


class Recorded(Spawner):
    """Says when each fork came, among the units' own news (Supervisor listeners)."""

    def __init__(self, events: list[str], fails: str | None = None) -> None:
        super().__init__()
        self.events, self.fails = events, fails

    def spawn_now(self, spec, env, output):
        if spec.name == self.fails:
            raise FileNotFoundError(2, "No such file or directory", "missing")
        child = super().spawn_now(spec, env, output)
        self.events.append(f"fork {spec.name}")
        return child


def test_units_started_together_are_all_forked_before_any_says_it_spawned_and_one_failure_stays_its_own(tmp_path):
    """A start of many units forks them one right after another, their bookkeeping after
    (Spawner.spawn): the first fork to the last is the forks alone, not each unit's logs and
    listeners between them. A unit whose program is missing fails alone."""
    from synsup.supervisor.engine.supervisor import Supervisor
    from synsup.supervisor.engine.unit_state import UnitState

    events: list[str] = []
    names = [f"u{i}" for i in range(6)]
    specs = [UnitSpec(name=n, argv=("sleep", "30"), notify=False) for n in names]

    async def main():
        sup = Supervisor(specs, log_dir=str(tmp_path), notify_dir=None, spawner=Recorded(events, fails="u3"))
        sup.add_listener(lambda u: u.pid is not None and events.append(f"pid {u.spec.name}"))
        async with asyncio.TaskGroup() as group:
            sup.spawn_tasks(group)
            try:
                sup.start_all()
                async with asyncio.timeout(10):
                    while not all(u.pid for n, u in sup.units.items() if n != "u3") or sup.units["u3"].error is None:
                        await asyncio.sleep(0.005)
                assert "cannot start sleep" in sup.units["u3"].error or "No such file" in sup.units["u3"].error
                assert sup.units["u0"].state is not UnitState.FAILED
            finally:
                await sup.stop_all()
                sup.cancel_tasks()
        sup.close()
    asyncio.run(main())
    forks = [i for i, e in enumerate(events) if e.startswith("fork")]
    said = [i for i, e in enumerate(events) if e.startswith("pid")]
    assert len(forks) >= 5 and said, events
    assert max(forks[:5]) < min(said), events


def test_a_spawn_cancelled_before_or_right_after_its_fork_leaves_no_process(tmp_path):
    from synsup.supervisor.engine.process import REAPER

    async def main():
        spawner = Spawner()
        spec = UnitSpec(name="u", argv=("sleep", "30"))
        output = UnitOutput(str(tmp_path / "u.log"))
        env = {"PATH": os.environ["PATH"]}
        forked = []
        real = spawner.spawn_now
        spawner.spawn_now = lambda *a: forked.append(real(*a)) or forked[-1]
        queued = asyncio.ensure_future(spawner.spawn(spec, env, output))
        await asyncio.sleep(0)  # it has asked; the forks come at the loop's next turn
        queued.cancel()
        await asyncio.sleep(0.01)
        assert queued.cancelled() and forked == []  # never forked
        late = asyncio.ensure_future(spawner.spawn(spec, env, output))
        await asyncio.sleep(0)
        spawner._fork_asked()  # forked, its task not yet back
        late.cancel()
        with pytest.raises(asyncio.CancelledError):
            await late
        assert len(forked) == 1 and forked[0].exited
        pid = forked[0].pid
        deadline = time.monotonic() + 5
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            REAPER.reap()
            await asyncio.sleep(0.01)
        assert not os.path.exists(f"/proc/{pid}")
        output.close()
    asyncio.run(main())
