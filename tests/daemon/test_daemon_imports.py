"""The daemon's RSS is mostly the modules it imports (500 units: 55 MB against supervisord's 31):
what only rare commands or options need is imported when they are used, not by the daemon."""

from __future__ import annotations

import subprocess
import sys

import pytest

from synsup import version

pytestmark = pytest.mark.integration
ONLY_WHEN_USED = {
    "prometheus_client": "--metrics",
    "watchfiles": "a source that names files to watch",
    "yaml": "--cluster (the generic daemon reads no YAML; a Synapse source does)",
    "importlib.metadata": "the version of an install without a dist-info directory",
    "ssl": "a TLS probe, an etcd on https (OpenSSL's libraries: tls.py)",
    "tempfile": "--proxy nginx (its file written beside; random with it)",
    "synsup.supervisor.cluster_config": "--cluster (cluster.yaml; ipaddress, urllib.parse)",
    "hashlib": "digests of config files (OpenSSL's libcrypto; tokens come from os.urandom)",
}


def test_the_daemon_imports_what_only_options_and_rare_commands_use_when_they_are_used():
    program = ("import sys\nimport synsup.supervisor.cli.main, synsup.supervisor.daemon.daemon\n"
               f"print(' '.join(m for m in {sorted(ONLY_WHEN_USED)!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [], {m: ONLY_WHEN_USED[m] for m in done.stdout.split()}


def test_the_version_is_still_found_when_asked():
    done = subprocess.run([sys.executable, "-m", "synsup", "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"synsup {version()}", done.stdout + done.stderr


def test_the_version_is_read_without_importlib_metadata_and_is_the_same():
    program = ("import sys\nimport synsup\nprint(synsup.version(), 'importlib.metadata' in sys.modules)\n"
               "import importlib.metadata\nprint(importlib.metadata.version('synsup'))")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    ours, theirs = done.stdout.splitlines()
    assert ours == f"{theirs} False"
