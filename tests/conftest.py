import os
import shutil
import signal
import sys
import tempfile

import psutil
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers import Deployment


def _kill_tree_of_state(state_dir: str) -> None:
    """Last resort: anything still running with the state dir on its command line or environment."""
    for proc in psutil.process_iter(["pid", "cmdline", "environ"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            environ = proc.info["environ"] or {}
            if state_dir in cmdline or any(v.startswith(state_dir) for v in environ.values()):
                os.killpg(proc.pid, signal.SIGKILL) if os.getpgid(proc.pid) == proc.pid else proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
            pass


@pytest.fixture(autouse=True)
def own_check_cache(tmp_path_factory, monkeypatch):
    """`synsup check` without a state dir keeps Synapse's verdicts in $XDG_CACHE_HOME/synsup:
    a temp dir per test, never the developer's own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))


@pytest.fixture
def short_dir():
    """A short temp path: UNIX socket paths must stay under 108 bytes."""
    path = tempfile.mkdtemp(prefix="ss", dir="/tmp")
    yield path
    _kill_tree_of_state(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def running(deployment):
    """A started fake-Synapse deployment; after the test it stops, leaving no process."""
    from helpers import processes_with, wait_for
    done = deployment.start()
    assert done.returncode == 0, done.stdout + done.stderr
    yield deployment
    done = deployment.synsup("stop", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: not processes_with(deployment.control), timeout=10, what="every process to be gone")


@pytest.fixture
def deployment(short_dir):
    d = Deployment(os.path.join(short_dir, "d"), os.path.join(short_dir, "s"))
    yield d
    d.synsup("stop", timeout=120)
    d.postgres.close()
