"""Every child the daemon gains, it reaps (issue 20): descendants of units reparented to the
subreaper daemon left a zombie each until the daemon exited (155 after 30 s)."""

from __future__ import annotations

import os

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


def zombie_children(pid: int) -> list[int]:
    """The daemon's children (every thread's /proc children list) in state Z."""
    children = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            children += [int(c) for c in f.read().split()]
    zombies = []
    for child in children:
        try:
            with open(f"/proc/{child}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if state == b"Z":
            zombies.append(child)
    return zombies


def test_regression_helpers_that_setsid_leave_no_zombies(deployment):
    """Issue 20 audit: a reparented grandchild that called setsid() (a session leader) and exited
    before the daemon saw it alive stayed a zombie until the daemon exited."""
    deployment.behave("generic1", setsid_helpers=60)
    assert deployment.start().returncode == 0
    daemon = deployment.status()["daemon"]["pid"]
    wait_for(lambda: any(e["event"] == "setsid_helpers" for e in deployment.events()), timeout=30,
             what="generic1's 60 setsid helpers (3 s)")
    wait_for(lambda: len(zombie_children(daemon)) <= 2, timeout=5,
             what="the daemon to have at most a couple of zombie children")
    assert deployment.unit("generic1")["state"] == "ready"
