"""Trust boundaries (issue 11), in-process and without Synapse: state dirs another user made,
log files planted as symlinks, unit names that would leave their dir, the environment units
get, listen addresses in use, and probes that reach someone else's process.

Rows that need a second user run as root and act as uid 65534 (nobody) in a forked child:
everything is imported first, because the Python install under /root is unreadable to nobody."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from contextlib import redirect_stderr, redirect_stdout

import pytest
from fakes import FakeClock, FakeSpawner, until
from helpers import free_ports, modern_deployment, wait_for, write_deployment

from synsup.__main__ import main as synsup_main
from synsup.supervisor.daemon.control_server import ControlClient, ControlError
from synsup.supervisor.engine import preflight
from synsup.supervisor.engine.environment import EnvFileError, read_env_file, unit_environment, with_environment
from synsup.supervisor.engine.log_dir import LogDirError, prepare_log_dir
from synsup.supervisor.engine.probes import Prober
from synsup.supervisor.engine.supervisor import Supervisor
from synsup.supervisor.engine.unit import Timing
from synsup.supervisor.engine.unit_output import UnitOutput
from synsup.supervisor.engine.unit_state import UnitState
from synsup.supervisor.source import Loaded
from synsup.supervisor.spec import HttpProbe, RedisProbe, UnitSpec
from synsup.supervisor.statedir import StateDir, StateDirError

NOBODY = 65534
OTHER = 65533  # "another user": owns what the attacker planted
needs_root = pytest.mark.skipif(os.getuid() != 0, reason="acting as another user needs root")


def as_nobody(work, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run `work()` (an exit code) in a forked child as uid/gid 65534: (code, stdout, stderr)."""
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 99
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.environ.clear()
            os.environ.update(env or {"PATH": "/usr/bin:/bin"})
            with redirect_stdout(out), redirect_stderr(err):
                code = work()
        except BaseException as e:  # noqa: B036 - reported to the parent, whatever it is
            err.write(f"child raised {type(e).__name__}: {e}")
        finally:
            out.flush()
            err.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    with out, err:
        out.seek(0)
        err.seek(0)
        return os.waitstatus_to_exitcode(status), out.read(), err.read()


def cli(*argv: str):
    return lambda: synsup_main(list(argv))


class FakeDaemonSocket:
    """An attacker's socket that answers every request as a running synsup would."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(path)
        os.chmod(path, 0o666)
        self.sock.listen()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.makefile().readline()
                conn.sendall(json.dumps({"ok": True, "stopping": True, "daemon": {"pid": 1, "state": "running"},
                                         "units": []}).encode() + b"\n")

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)


@pytest.fixture
def nobody_default_dir():
    """/tmp/synsup-65534, nobody's default state dir, made by another user; removed after."""
    path = f"/tmp/synsup-{NOBODY}"
    if os.path.lexists(path):
        pytest.skip(f"{path} exists already (a real one?); not touching it")
    yield path
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
    else:
        shutil.rmtree(path)


def readable_deployment(short_dir: str) -> tuple[str, str]:
    os.chmod(short_dir, 0o755)
    return write_deployment(os.path.join(short_dir, "d"), *modern_deployment(free_ports(6)))


# -- state dir
@needs_root
def test_a_default_state_dir_another_user_made_is_not_ours(nobody_default_dir, short_dir):
    """Row 2: the victim's start said "already running", status showed the attacker's table,
    stop said "stopped"."""
    os.mkdir(nobody_default_dir, 0o755)
    os.chown(nobody_default_dir, OTHER, OTHER)
    fake = FakeDaemonSocket(os.path.join(nobody_default_dir, "synsup.sock"))
    config, workers = readable_deployment(short_dir)
    try:
        for argv in (("status",), ("stop",), ("restart",), ("start", "-c", config, "-a", workers)):
            code, out, err = as_nobody(cli(*argv))
            assert code == 1 and out == "", (argv, out, err)
            line = err.strip().splitlines()[-1]
            assert line.startswith(f"synsup: error: state dir {nobody_default_dir} is owned by uid {OTHER}"), err
            assert "not ours" in line and "--state-dir" in line
    finally:
        fake.close()


@needs_root
def test_a_default_state_dir_that_is_a_planted_symlink_is_refused(nobody_default_dir, short_dir):
    """Row 2, symlink variant: the victim's stop said "stopped" while its daemon ran on."""
    target = os.path.join(short_dir, "attacker")
    os.chmod(short_dir, 0o755)
    os.mkdir(target, 0o700)
    os.chown(target, NOBODY, NOBODY)
    fake = FakeDaemonSocket(os.path.join(target, "synsup.sock"))
    os.symlink(target, nobody_default_dir)
    os.lchown(nobody_default_dir, OTHER, OTHER)
    try:
        code, out, err = as_nobody(cli("stop"))
        assert code == 1 and "stopped" not in out
        assert err.startswith(f"synsup: error: state dir {nobody_default_dir} is a symlink (to {target})"), err
    finally:
        fake.close()


@needs_root
def test_nobody_gets_xdg_runtime_dir_first_and_tmp_without_it(short_dir):
    from synsup.supervisor.statedir import default_state_dir
    code, out, _ = as_nobody(lambda: print(default_state_dir()) or 0, {"XDG_RUNTIME_DIR": "/run/user/65534"})
    assert (code, out.strip()) == (0, "/run/user/65534/synsup")
    code, out, _ = as_nobody(lambda: print(default_state_dir()) or 0)
    assert (code, out.strip()) == (0, "/tmp/synsup-65534")


@needs_root
def test_a_state_dir_given_as_a_planted_symlink_is_never_followed(short_dir):
    """Row 3: the target was chmod 0700 and written."""
    target, link = os.path.join(short_dir, "target"), os.path.join(short_dir, "link")
    os.mkdir(target, 0o755)
    os.chown(target, NOBODY, NOBODY)
    os.symlink(target, link)
    os.lchown(link, NOBODY, NOBODY)
    with pytest.raises(StateDirError, match=f"state dir {link} is a symlink"):
        StateDir(link).create()
    assert os.stat(target).st_mode & 0o777 == 0o755 and os.listdir(target) == []


@pytest.mark.parametrize("case", ["world-writable", "not a directory", "under another user's dir"])
def test_an_unsafe_existing_state_dir_is_one_line_naming_the_fix(short_dir, case):
    path = os.path.join(short_dir, "s")
    if case == "world-writable":
        os.mkdir(path)
        os.chmod(path, 0o777)
        expected = f"state dir {path} is writable by other users (mode 0777); chmod 700 {path}"
    elif case == "not a directory":
        open(path, "w").close()
        expected = f"state dir {path} is not a directory; remove it"
    else:
        if os.getuid() != 0:
            pytest.skip("chown to another user needs root")
        os.mkdir(os.path.join(short_dir, "theirs"))
        os.chown(os.path.join(short_dir, "theirs"), NOBODY, NOBODY)
        path = os.path.join(short_dir, "theirs", "s")
        os.mkdir(path, 0o700)  # ours, but they may rename it and put theirs in its place
        expected = f"state dir {path} is not safe: {short_dir}/theirs is owned by uid {NOBODY}"
    for check in (StateDir(path).create, StateDir(path).verify):
        with pytest.raises(StateDirError) as e:
            check()
        assert str(e.value).startswith(expected) and "\n" not in str(e.value)
        assert "--state-dir DIR" in str(e.value)


def test_a_new_state_dir_is_0700_and_one_of_ours_is_taken(short_dir):
    state = StateDir(os.path.join(short_dir, "a", "s"))
    state.verify()  # nothing there yet: fine, nothing runs
    state.create()
    assert os.stat(state.path).st_mode & 0o777 == 0o700
    os.chmod(state.path, 0o750)
    state.create()  # ours and not writable by others: taken, and made 0700 again
    assert os.stat(state.path).st_mode & 0o777 == 0o700
    state.verify()


@needs_root
def test_a_client_of_another_uid_gets_one_line_never_silence(short_dir):
    """Row 10: status and restart exited 0 with no output (a broken pipe taken as success)."""
    state = StateDir(os.path.join(short_dir, "s"))
    state.create()
    FakeDaemonSocket(state.socket).close()  # (only to leave a socket file there)
    code, out, err = as_nobody(cli("status", "--state-dir", state.path))
    assert code == 1 and out == ""
    assert err.startswith(f"synsup: error: cannot check state dir {state.path}") or "not ours" in err, err
    os.chmod(short_dir, 0o755)
    os.chmod(state.path, 0o755)  # opened up, socket too: the daemon's own uid check answers

    async def serve():
        from synsup.supervisor.daemon.control_server import ControlServer
        server = ControlServer(state.socket, lambda request, send: send({"ok": True}))
        await server.start()
        os.chmod(state.socket, 0o666)

        def client() -> int:
            try:
                with ControlClient(state.socket) as c:
                    c.request({"cmd": "status"})
            except ControlError as e:
                print(e)
                return 1
            return 0
        try:
            return await asyncio.to_thread(as_nobody, client)
        finally:
            server.close()
    code, out, _ = asyncio.run(serve())
    assert code == 1 and f"uid {NOBODY} may not control this synsup daemon" in out


# -- logs
def test_log_files_are_0640_in_a_0750_dir(short_dir):
    old = os.umask(0o022)
    try:
        log_dir = prepare_log_dir(os.path.join(short_dir, "logs"))
        output = UnitOutput.for_unit(log_dir, "main")
        output.write(b"hello\n")
        output.close()
    finally:
        os.umask(old)
    assert os.stat(log_dir).st_mode & 0o777 == 0o750
    assert os.stat(os.path.join(log_dir, "main.log")).st_mode & 0o777 == 0o640


@pytest.mark.parametrize("plant", ["symlink", "fifo", "hard link"])
def test_a_planted_log_file_is_refused_and_its_target_untouched(short_dir, plant):
    log_dir = prepare_log_dir(os.path.join(short_dir, "logs"))
    target = os.path.join(short_dir, "secret")
    with open(target, "w") as f:
        f.write("root only\n")
    path = os.path.join(log_dir, "pusher1.log")
    {"symlink": lambda: os.symlink(target, path), "fifo": lambda: os.mkfifo(path),
     "hard link": lambda: os.link(target, path)}[plant]()
    output = UnitOutput.for_unit(log_dir, "pusher1")
    why = output.check()
    assert why is not None and why.startswith(f"log file {path} ") and "remove it" in why
    output.write(b"token=abc\n")
    with open(target) as f:
        assert f.read() == "root only\n"
    assert "bytes dropped (log file" in (output.describe_drops() or "")


@needs_root
def test_a_log_dir_symlink_of_another_user_is_refused(short_dir):
    link = os.path.join(short_dir, "logs")
    os.symlink("/root", link)
    os.lchown(link, NOBODY, NOBODY)
    with pytest.raises(LogDirError, match=f"log dir {link} is not safe: {link} is a symlink owned by uid {NOBODY}"):
        prepare_log_dir(link)


def test_a_log_dir_replaced_by_a_symlink_later_is_not_followed(short_dir):
    log_dir = prepare_log_dir(os.path.join(short_dir, "logs"))
    elsewhere = os.path.join(short_dir, "elsewhere")
    os.mkdir(elsewhere)
    output = UnitOutput.for_unit(log_dir, "main")
    os.rmdir(log_dir)
    os.symlink(elsewhere, log_dir)
    assert output.check() is None  # not a refusal of the file: output is dropped and tried again
    output.write(b"x\n")
    assert os.listdir(elsewhere) == [] and output.dropped


def test_a_log_dir_opened_once_is_not_written_after_it_was_replaced(short_dir):
    """The log dir's descriptor is kept after its first open: a symlink planted in its place
    later is still not followed, and a dir made anew is written, not the old one moved away."""
    log_dir = prepare_log_dir(os.path.join(short_dir, "logs"))
    output = UnitOutput.for_unit(log_dir, "main")
    os.close(output.open_for_child())
    moved, elsewhere = log_dir + ".old", os.path.join(short_dir, "elsewhere")
    os.rename(log_dir, moved)
    os.mkdir(elsewhere)
    os.symlink(elsewhere, log_dir)
    assert output.open_for_child() is None
    assert os.listdir(elsewhere) == [] and os.listdir(moved) == ["main.log"]
    os.unlink(log_dir)
    os.mkdir(log_dir, 0o700)
    os.close(UnitOutput.for_unit(log_dir, "main").open_for_child())
    assert os.listdir(log_dir) == ["main.log"]


# -- names, in the engine (defence in depth behind `synsup check`)
def test_units_whose_names_would_leave_the_log_dir_fail_and_the_others_start(short_dir):
    """Rows 4 and 5: a log outside the state dir; a 96-character name killed the daemon."""
    log_dir = os.path.join(short_dir, "s", "logs")
    os.makedirs(log_dir)
    names = ["../../escape/victim", "g" * 96, "generic1"]
    specs = [UnitSpec(name=n, argv=("fake",), notify=False) for n in names]

    async def main():
        sup = Supervisor(specs, log_dir=log_dir, notify_dir=os.path.join(short_dir, "s"), clock=FakeClock(),
                         spawner=FakeSpawner(), timing=Timing(liveness_interval=None, notify_grace=0.0))
        async with asyncio.TaskGroup() as group:
            sup.spawn_tasks(group)
            sup.start_all()
            await until(lambda: all(u.settled for u in sup.units.values()), 10_000)
            sup.cancel_tasks()
        return {n: (u.state, u.error) for n, u in sup.units.items()}, len(sup.spawner.children)
    states, spawned = asyncio.run(main())
    assert spawned == 1 and states["generic1"][0] is UnitState.READY
    for name in names[:2]:
        state, error = states[name]
        assert state is UnitState.FAILED and "cannot name a log file: use letters, digits" in error
    assert not os.path.exists(os.path.join(short_dir, "escape"))


# -- environment
def test_units_get_a_clean_environment_with_the_env_file_under_the_deployments_own(tmp_path):
    env_file = tmp_path / "matrix-synapse"
    env_file.write_text('# Debian\'s /etc/default/matrix-synapse\nexport SYNAPSE_CACHE_FACTOR=0.5\n\n'
                        'SECRET_KEY="a b # c"\nSINGLE=\'$x\'\n')
    variables = read_env_file(str(env_file))
    assert variables == {"SYNAPSE_CACHE_FACTOR": "0.5", "SECRET_KEY": "a b # c", "SINGLE": "$x"}
    spec = UnitSpec(name="main", argv=("x",), env=(("SYNAPSE_CACHE_FACTOR", "2"),))
    [spec] = with_environment(Loaded([spec]), variables).specs
    base = {"PATH": "/bin", "AWS_SECRET_ACCESS_KEY": "k", "SSH_AUTH_SOCK": "/s", "LC_ALL": "C", "PYTHONPATH": "p"}
    env = unit_environment(spec.env, "/n.sock", base)
    assert env == {"PATH": "/bin", "LC_ALL": "C", "PYTHONPATH": "p", "SYNAPSE_CACHE_FACTOR": "2",
                   "SECRET_KEY": "a b # c", "SINGLE": "$x", "NOTIFY_SOCKET": "/n.sock"}


@pytest.mark.parametrize("line, message", [
    ("JUST_A_NAME", "expected KEY=VALUE"),
    ("1ABC=x", "'1ABC' is not a variable name"),
    ('QUOTED="open', 'the value opens a " quote and does not close it'),
])
def test_a_bad_env_file_line_is_file_and_line(tmp_path, line, message):
    env_file = tmp_path / "env"
    env_file.write_text(f"GOOD=1\n{line}\n")
    with pytest.raises(EnvFileError) as e:
        read_env_file(str(env_file))
    assert str(e.value).startswith(f"{env_file}:2: {message}") and "KEY=VALUE" in str(e.value)


def test_a_missing_env_file_is_one_line(tmp_path):
    with pytest.raises(EnvFileError, match=f"cannot read env file {tmp_path}/none: No such file"):
        read_env_file(str(tmp_path / "none"))


# -- addresses in use, and whose process answers
def test_a_port_in_use_names_its_owner():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        why = preflight.address_in_use(f"127.0.0.1:{port}")
        assert why is not None and why.startswith(f"port {port} is in use by pid {os.getpid()} (")
        assert preflight.address_in_use(f"0.0.0.0:{port}") == why  # a wildcard collides too
    assert preflight.address_in_use(f"127.0.0.1:{port}") is None


def test_a_unix_socket_in_use_is_taken_and_a_stale_one_is_free(short_dir):
    path = os.path.join(short_dir, "s.sock")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(path)
        s.listen()
        assert preflight.address_in_use(f"unix:{path}") == f"socket {path} is in use by pid {os.getpid()} " \
                                                           f"({preflight.psutil.Process().name()})"
    assert preflight.address_in_use(f"unix:{path}") is None  # the file is left, nobody answers


@needs_root
def test_a_port_held_by_someone_we_may_not_see_is_in_use_by_another_process():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]

        def look() -> int:
            s.close()  # the forked child's copy: root's process alone holds the port
            print(preflight.address_in_use(f"127.0.0.1:{port}"))
            return 0
        code, out, err = as_nobody(look)
    assert (code, out.strip()) == (0, f"port {port} is in use by another process"), err


def test_an_http_listener_of_another_process_is_not_the_units(short_dir):
    async def main():
        async def handle(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
            await writer.drain()
            writer.close()
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        other = await asyncio.create_subprocess_exec("sleep", "60")
        prober = Prober((HttpProbe(host="127.0.0.1", port=server.sockets[0].getsockname()[1]),))
        try:
            prober.owner_pid = other.pid
            foreign = await prober.check_all(2.0)
            prober.owner_pid = os.getpid()  # the listener is this test's own
            own = await prober.check_all(2.0)
        finally:
            prober.close()
            other.kill()
            await other.wait()
            server.close()
        return foreign, own
    foreign, own = asyncio.run(main())
    assert foreign is not None and "is answered by a process outside this unit (not pid" in foreign
    assert own is None


@pytest.fixture
def redis_server():
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    [port] = free_ports(1)
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: preflight.address_in_use(f"127.0.0.1:{port}"), what="redis-server to listen")
        yield proc, port
    finally:
        proc.kill()
        proc.wait()


def test_a_foreign_redis_is_not_ours_and_an_external_one_is_only_pinged(redis_server):
    proc, port = redis_server
    probe = RedisProbe(host="127.0.0.1", port=port)

    async def check(owner):
        prober = Prober((probe,))
        prober.owner_pid = owner
        return await prober.check_all(2.0)
    why = asyncio.run(check(proc.pid + 100_000))
    assert why == f"redis://127.0.0.1:{port} is answered by another Redis (pid {proc.pid}), not ours " \
                  f"(pid {proc.pid + 100_000})"
    assert asyncio.run(check(proc.pid)) is None
    assert asyncio.run(check(None)) is None  # --external-redis: no identity to check
    assert preflight.address_in_use(f"127.0.0.1:{port}") == f"port {port} is in use by pid {proc.pid} (redis-server)"



def test_an_env_file_value_over_the_kernels_limit_is_refused_at_start(tmp_path):
    """A 200 kB value passed, then every unit failed with "Argument list too long"."""
    env_file = tmp_path / "env"
    env_file.write_text("GOOD=1\nBIG=" + "x" * 200_000 + "\n")
    with pytest.raises(EnvFileError) as e:
        read_env_file(str(env_file))
    message = str(e.value)
    assert message.startswith(f"{env_file}:2: BIG is 200004 bytes") and "131072" in message
    assert "\n" not in message
    env_file.write_text("BIG=" + "x" * 131_000 + "\n")
    assert len(read_env_file(str(env_file))["BIG"]) == 131_000


def test_a_log_dir_that_cannot_be_written_is_one_line_before_anything_starts(short_dir):
    """A read-only log dir that exists: every line was dropped (EROFS), and start said ready."""
    log_dir = os.path.join(short_dir, "logs")
    os.mkdir(log_dir, 0o750)
    # a read-only mount where we can make one (root ignores mode bits); else a 0500 dir as non-root
    if os.getuid() == 0 and shutil.which("unshare") is None:
        pytest.skip("needs unshare to make a read-only mount as root")
    if os.getuid() == 0:
        script = ("import sys; from synsup.supervisor.engine.log_dir import prepare_log_dir, LogDirError\n"
                  "try:\n    prepare_log_dir(sys.argv[1])\nexcept LogDirError as e:\n    print(e); sys.exit(3)\n")
        done = subprocess.run(["unshare", "-m", "sh", "-c",
                               'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && exec "$2" -c "$3" "$1"',
                               "sh", log_dir, sys.executable, script], capture_output=True, text=True, timeout=60)
        if "mount" in done.stderr and done.returncode not in (0, 3):
            pytest.skip(f"cannot make a read-only mount here: {done.stderr.strip()}")
        assert done.returncode == 3, done.stderr
        message = done.stdout.strip()
    else:
        os.chmod(log_dir, 0o500)
        with pytest.raises(LogDirError) as e:
            prepare_log_dir(log_dir)
        message = str(e.value)
    assert message.startswith(f"cannot write to log dir {log_dir}: ") and "--log-dir" in message
    assert "\n" not in message
