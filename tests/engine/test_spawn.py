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
