"""The fake Synapse itself (tests/fake): as Synapse's sdnotify, a READY=1 that finds no
supervisor (its notify socket gone: a daemon killed while the process started) is no reason to
die; the process runs on, as real Synapse does, for the returning daemon to adopt."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from helpers import Deployment, wait_for

pytestmark = pytest.mark.integration


def test_the_fake_runs_on_when_its_ready_finds_no_supervisor(short_dir: str) -> None:
    d = Deployment(os.path.join(short_dir, "d"), os.path.join(short_dir, "s"))
    env = {**d.env(), "NOTIFY_SOCKET": os.path.join(short_dir, "gone", "notify")}
    fake = subprocess.Popen([sys.executable, "-m", "synapse.app.generic_worker", "-c", d.config,
                             "-c", os.path.join(d.workers_dir, "generic1.yaml")],
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: [e for e in d.events() if e["event"] == "ready"], timeout=20, what="the fake ready")
        assert fake.poll() is None, fake.communicate()[1]
        fake.send_signal(signal.SIGTERM)
        _, err = fake.communicate(timeout=20)
        assert fake.returncode == 0, err
        assert "Unable to send notification to systemd" in err
    finally:
        if fake.poll() is None:
            fake.kill()
            fake.communicate()
        d.postgres.close()
