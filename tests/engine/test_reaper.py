"""Every child the daemon gains, it reaps (issue 20): descendants of units reparented to the
subreaper daemon left a zombie each until the daemon exited (155 after 30 s)."""

from __future__ import annotations

import psutil
import pytest
from helpers import wait_for

pytestmark = pytest.mark.integration


def zombies_under(pid):
    return [c.pid for c in psutil.Process(pid).children() if c.status() == psutil.STATUS_ZOMBIE]


def test_short_lived_double_forked_helpers_leave_no_zombies(deployment):
    deployment.behave("generic1", helpers=60)
    assert deployment.start().returncode == 0
    daemon = deployment.status()["daemon"]["pid"]
    wait_for(lambda: any(e["event"] == "helpers" for e in deployment.events()), timeout=30,
             what="generic1's 60 helpers to have run")
    wait_for(lambda: not zombies_under(daemon), timeout=5, what="the daemon to reap its helpers' zombies")
    assert deployment.unit("generic1")["state"] == "ready"
