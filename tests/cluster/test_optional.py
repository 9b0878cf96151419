"""Multi-host is optional: without --cluster, `synsup check` and a started daemon never import the
store client (supervisor/cluster/), as seen by Python's own import log (PYTHONPROFILEIMPORTTIME:
the daemon is the `start` command forked, so its imports are in the command's stderr, and what it
imports later in daemon.log, its stderr)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from helpers import Deployment

pytestmark = pytest.mark.integration

CLUSTER_PACKAGE = re.compile(r"\|\s+synsup\.supervisor\.cluster(\.\w+)?\s*$", re.MULTILINE)


def imported_cluster_modules(import_log: str) -> list[str]:
    return [m.group(0).split("|")[-1].strip() for m in CLUSTER_PACKAGE.finditer(import_log)]


def test_the_import_log_names_the_cluster_package_when_it_is_imported() -> None:
    """(else the tests below prove nothing)"""
    log = "import time:       120 |        300 |   synsup.supervisor.cluster.etcd_gateway\n" \
          "import time:        20 |         20 | synsup.supervisor.cluster_config\n"
    assert imported_cluster_modules(log) == ["synsup.supervisor.cluster.etcd_gateway"]


def test_check_without_cluster_does_not_import_the_store_client(deployment: Deployment,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")
    done = subprocess.run([sys.executable, "-m", "synsup", "check", "-c", deployment.config, "-a",
                           deployment.workers_dir], capture_output=True, text=True, env=deployment.env(), timeout=60)
    assert done.returncode == 0, done.stderr
    assert "synsup.supervisor.cli.main" in done.stderr, "the import log is there"
    assert imported_cluster_modules(done.stderr) == []


def test_a_daemon_without_cluster_does_not_import_the_store_client(deployment: Deployment,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")
    done = deployment.start()
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(u["state"] == "ready" for u in deployment.status()["units"])
    assert deployment.synsup("stop").returncode == 0
    with open(os.path.join(deployment.state_dir, "daemon.log")) as f:
        log = done.stderr + f.read()  # the daemon is the start command forked: what it imported before
    assert "synsup.supervisor.daemon.daemon" in log, "the daemon's import log is there"  # and after
    assert imported_cluster_modules(log) == []
