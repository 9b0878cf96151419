"""`status` as the daemon builds it (daemon/status_report.py, Daemon.status_reply), in-process:
the typed reply's line has the keys the dict-built reply had, and reads back to the same bytes."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from fakes import FakeSpawner, until

from synsup.supervisor.daemon.daemon import Daemon
from synsup.supervisor.engine.unit import Timing
from synsup.supervisor.protocol import StatusReply, read_reply
from synsup.supervisor.source import Loaded
from synsup.supervisor.spec import UnitSpec
from synsup.supervisor.statedir import StateDir

SPECS = [UnitSpec(name="main", argv=("fake", "main"), notify=False),
         UnitSpec(name="worker", argv=("fake", "worker"), dependencies=("main",), step=1, notify=False)]


@pytest.fixture(autouse=True)
def no_subreaper(monkeypatch):
    monkeypatch.setattr("synsup.supervisor.daemon.daemon.become_subreaper", lambda: False)


def test_the_daemons_status_line_reads_back_byte_for_byte(short_dir) -> None:
    lines: list[dict] = []

    async def main() -> None:
        stop = asyncio.Event()
        d = Daemon(Loaded(SPECS), StateDir(os.path.join(short_dir, "s")), os.path.join(short_dir, "logs"),
                   timing=Timing(liveness_interval=None, notify_grace=0.0), spawner=FakeSpawner(),
                   stop_trigger=stop.wait)
        run = asyncio.ensure_future(d.run())
        await until(lambda: d.supervisor is not None and d.supervisor.all_ready(), 100_000)
        lines.extend([d.status(), d.status(["worker"])])
        stop.set()
        await run

    asyncio.run(main())
    full, one = lines
    assert list(full["daemon"])[:4] == ["pid", "version", "state", "config_generation"]
    assert "proxy" in full["daemon"] and all("proxy" not in u for u in full["units"])  # no --proxy
    assert [u["name"] for u in full["units"]] == ["main", "worker"] and [u["name"] for u in one["units"]] == ["worker"]
    assert full["units"][0]["state"] == "ready" and full["daemon"]["config_generation"] == 1
    for line in (full, one):
        text = json.dumps(line)
        reply = read_reply("status", json.loads(text))
        assert isinstance(reply, StatusReply) and json.dumps(reply.as_json()) == text
