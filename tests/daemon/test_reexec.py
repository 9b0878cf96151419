"""`synsup reexec` (issue 20): the daemon re-executes itself in place, same pid (systemd sees no
restart), keeping every unit (same pids, adopted as its children) and its control socket; a new
version that does not come up is never exec'd."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest
from helpers import FAKE_SYNAPSE, REPO, processes_with, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def reexecable(deployment):
    """A deployment whose daemon finds `synsup` first in a directory the test may fill (a new
    version "installed" under the running daemon)."""
    deployment.installed = os.path.join(deployment.root, "installed")
    os.makedirs(deployment.installed)
    base = deployment.env
    deployment.env = lambda: {**base(), "PYTHONPATH": f"{deployment.installed}:{FAKE_SYNAPSE}"}

    def synsup_with_pythonpath(path, *args):  # a client that imports the synsup under test
        return subprocess.run([sys.executable, "-m", "synsup", *args, "--state-dir", deployment.state_dir],
                              capture_output=True, text=True, env={**base(), "PYTHONPATH": path}, timeout=180,
                              cwd=REPO)
    deployment.synsup_with_pythonpath = synsup_with_pythonpath
    yield deployment
    done = deployment.synsup("stop")
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: not processes_with(deployment.control), timeout=15, what="every process to be gone")


def test_reexec_keeps_the_daemon_pid_every_unit_and_supervision(reexecable):
    d = reexecable
    assert d.start().returncode == 0
    assert d.synsup("stop", "generic1").returncode == 0  # held by the admin: stays stopped across it
    before, status = d.pids(), d.status()["daemon"]
    done = d.synsup("reexec")
    assert done.returncode == 0 and "re-executed in place" in done.stdout, done.stdout + done.stderr
    after = d.status()
    assert after["daemon"]["pid"] == status["pid"] and after["daemon"]["image_started_at"] != status["image_started_at"]
    assert d.pids() == before, "every unit keeps its process"
    states = {u["name"]: u["state"] for u in after["units"]}
    assert states.pop("generic1") == "stopped" and set(states.values()) == {"ready"}, states
    assert [e for e in d.events() if e["event"] == "exit" and e["name"] != "generic1"] == []

    os.kill(before["persister1"], signal.SIGKILL)  # its child still: the exit status is known
    unit = wait_for(lambda: (u := d.unit("persister1"))["state"] == "ready" and u["pid"] != before["persister1"]
                    and u, what="persister1 restarted by the new image")
    assert unit["last_exit"]["signal"] == "SIGKILL", unit


def test_a_new_version_that_does_not_come_up_is_never_executed(reexecable):
    d = reexecable
    assert d.start().returncode == 0
    before, status = d.pids(), d.status()["daemon"]
    os.makedirs(os.path.join(d.installed, "synsup"))
    for name in ("__init__.py", "__main__.py"):
        with open(os.path.join(d.installed, "synsup", name), "w") as f:
            f.write("raise ImportError('broken release')\n")
    done = d.synsup_with_pythonpath(FAKE_SYNAPSE, "reexec")
    assert done.returncode == 1 and "broken release" in done.stderr and "goes on unchanged" in done.stderr, \
        done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    shutil.rmtree(os.path.join(d.installed, "synsup"))  # (the test's own client imports it too)
    assert d.status()["daemon"]["image_started_at"] == status["image_started_at"]
    assert d.pids() == before


def _install(d, package: dict[str, str]) -> str:
    """A "new version" installed under the running daemon: the checkout's package as symlinks,
    with the files in `package` (path inside synsup -> source) written instead."""
    root = os.path.join(d.installed, "synsup")
    for directory, dirs, files in os.walk(REPO):
        dirs[:] = [x for x in dirs if x not in ("tests", "contrib", "docs", "build", ".venv", ".git")
                   and not x.startswith((".", "__pycache__")) and not x.endswith(".egg-info")]
        inside = os.path.relpath(directory, REPO)
        os.makedirs(os.path.join(root, inside), exist_ok=True)
        for name in files:
            if name.endswith(".py"):
                os.symlink(os.path.join(directory, name), os.path.join(root, inside, name))
    for path, text in package.items():
        os.unlink(os.path.join(root, path))
        with open(os.path.join(root, path), "w") as f:
            f.write(text)
    return root


def _unchanged(d, before, status):
    assert d.status()["daemon"]["image_started_at"] == status["image_started_at"]
    assert d.status()["daemon"]["pid"] == status["pid"]
    assert d.pids() == before, "every unit keeps its process"
    assert [e for e in d.events() if e["event"] == "exit"] == []


def test_a_new_version_whose_daemon_module_raises_is_never_executed(reexecable):
    """Issue 20 audit: the trial runs the new image's daemon code (not only the package's top), so
    a release broken below the top is refused and the running daemon goes on, pid and units kept."""
    d = reexecable
    assert d.start().returncode == 0
    before, status = d.pids(), d.status()["daemon"]
    root = _install(d, {"supervisor/daemon/daemon.py": "raise RuntimeError('broken daemon module')\n"})
    try:
        done = d.synsup_with_pythonpath(FAKE_SYNAPSE, "reexec")
    finally:
        shutil.rmtree(root)  # the fixture's own clients import synsup from there
    assert done.returncode == 1 and "broken daemon module" in done.stderr and "goes on unchanged" in done.stderr, \
        done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    _unchanged(d, before, status)


def test_a_new_version_that_hangs_is_never_executed(reexecable):
    """Issue 20 audit: a new image that never comes up (a hang at import) is given --trial-timeout,
    killed, refused in one line; the running daemon goes on with its pid and every unit."""
    d = reexecable
    assert d.start().returncode == 0
    before, status = d.pids(), d.status()["daemon"]
    root = _install(d, {"__init__.py": "import time\ntime.sleep(3600)\n"})
    try:
        done = d.synsup_with_pythonpath(FAKE_SYNAPSE, "reexec", "--trial-timeout", "2")
    finally:
        shutil.rmtree(root)  # the fixture's own clients import synsup from there
    assert done.returncode == 1 and "did not come up within 2 s" in done.stderr \
        and "goes on unchanged" in done.stderr, done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not [p for p in processes_with(d.installed) if "--version" in _cmdline(p)], "the trial is killed"
    _unchanged(d, before, status)
    done = d.synsup("reexec")  # the install fixed: the reexec goes through
    assert done.returncode == 0 and "re-executed in place" in done.stdout, done.stdout + done.stderr
    assert d.pids() == before


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline") as f:
            return f.read().split("\0")
    except OSError:
        return []


@pytest.mark.parametrize("orig_argv, argv, trial", [
    (["/venv/bin/python", "-m", "synsup", "run", "-c", "h.yaml"], ["/x/synsup/__main__.py", "run", "-c", "h.yaml"],
     ["/venv/bin/python", "-m", "synsup", "--version"]),
    (["/venv/bin/python", "-X", "dev", "/usr/bin/synsup", "start", "--foreground"],
     ["/usr/bin/synsup", "start", "--foreground"], ["/venv/bin/python", "-X", "dev", "/usr/bin/synsup", "--version"]),
])
def test_the_trial_runs_the_same_interpreter_and_argv_prefix_as_the_exec(orig_argv, argv, trial):
    from synsup.supervisor.daemon.reexec import trial_argv
    assert trial_argv(orig_argv, argv) == trial
