"""units.json (daemon/records.py) off the respawn path: a py-spy profile of crash -> new child
with 500 units spent 62 % of the daemon's time writing all 500 records, twice per crash, each
time before the new fork."""

from __future__ import annotations

import asyncio
import json
import os
from types import SimpleNamespace

from synsup.supervisor.daemon import records as records_module
from synsup.supervisor.daemon.records import WRITE_DELAY, Records
from synsup.supervisor.statedir import StateDir


def fake_supervisor(count: int) -> SimpleNamespace:
    units = {f"u{i}": SimpleNamespace(pid=os.getpid(), spec=SimpleNamespace(argv=("x",), step=0, stop_timeout=5))
             for i in range(count)}
    return SimpleNamespace(units=units)


def test_a_burst_of_changes_is_written_once_after_a_delay_not_on_the_next_loop_turn(tmp_path):
    state = StateDir(str(tmp_path))
    sup = fake_supervisor(3)

    async def main():
        records = Records(state)
        for _ in range(5):
            records.changed(sup)
        await asyncio.sleep(0)  # what a unit's restart does before its fork
        await asyncio.sleep(0)
        written_at_once = os.path.exists(state.units_file)
        await asyncio.sleep(WRITE_DELAY * 3)
        return written_at_once
    assert asyncio.run(main()) is False
    with open(state.units_file) as f:
        assert sorted(json.load(f)) == ["u0", "u1", "u2"]


def test_only_new_pids_are_looked_up_and_serialised(tmp_path, monkeypatch):
    state = StateDir(str(tmp_path))
    sup = fake_supervisor(50)
    looked_up = []
    monkeypatch.setattr(records_module, "create_time", lambda pid: looked_up.append(pid) or 1.5)
    records = Records(state)
    records.write_units(sup)
    sup.units["u7"].pid = os.getpid() + 1
    records.write_units(sup)
    assert len(looked_up) == 51
    with open(state.units_file) as f:
        written = json.load(f)
    assert written["u7"]["pid"] == os.getpid() + 1 and written["u8"] == {
        "pid": os.getpid(), "cmdline": ["x"], "step": 0, "stop_timeout": 5, "create_time": 1.5}
