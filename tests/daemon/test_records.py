"""units.json (daemon/records.py) off the respawn path: a py-spy profile of crash -> new child
with 500 units spent 62 % of the daemon's time writing all 500 records, twice per crash, each
time before the new fork. Later, the write 50 ms after a crash met the next crash: the rename
of units.json (2.6 ms on ext4) now happens in a writer thread, beside the loop."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from types import SimpleNamespace

from synsup.supervisor.daemon import records as records_module
from synsup.supervisor.daemon.records import Records
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
        deadline = time.monotonic() + 10
        while not os.path.exists(state.units_file) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return written_at_once
    assert asyncio.run(main()) is False
    with open(state.units_file) as f:
        assert sorted(json.load(f)) == ["u0", "u1", "u2"]


def test_only_new_pids_are_looked_up_and_serialised(tmp_path, monkeypatch):
    state = StateDir(str(tmp_path))
    sup = fake_supervisor(50)
    looked_up = []
    monkeypatch.setattr(records_module, "create_time", lambda pid, boot=None: looked_up.append(pid) or 1.5)
    records = Records(state)
    records.write_units(sup)
    sup.units["u7"].pid = os.getpid() + 1
    records.write_units(sup)
    assert len(looked_up) == 51
    with open(state.units_file) as f:
        written = json.load(f)
    assert written["u7"]["pid"] == os.getpid() + 1 and written["u8"] == {
        "pid": os.getpid(), "cmdline": ["x"], "step": 0, "stop_timeout": 5, "create_time": 1.5}


def test_the_burst_write_runs_beside_the_loop_and_a_write_relied_on_lands_after_it(tmp_path, monkeypatch):
    """A slow disk holds the writer thread, not the loop; a write that must be on disk (before a
    fork, an exec in place, at exit) waits for the queued one, and the file ends as it asked."""
    state = StateDir(str(tmp_path))
    sup = fake_supervisor(2)
    disk_free, writing = threading.Event(), threading.Event()
    held: list[bool] = []  # whether the held write was let go (False: the wait timed out)
    plain = StateDir.write_text

    def slow_disk(self, path, text):
        if not held:
            writing.set()
            held.append(disk_free.wait(5))  # on the loop's thread, nothing would let it go
        plain(self, path, text)
    monkeypatch.setattr(StateDir, "write_text", slow_disk)

    async def main():
        records = Records(state)
        records.changed(sup)
        deadline = time.monotonic() + 10
        while not writing.is_set():  # the timer's write began in the writer thread
            assert time.monotonic() < deadline
            await asyncio.sleep(0.005)
        for _ in range(20):  # the loop turns on while the disk holds the write
            await asyncio.sleep(0)
        sup.units["u1"].pid = os.getpid() + 1
        letting_go = threading.Timer(0.2, disk_free.set)
        letting_go.start()
        records.write_units(sup)  # waits for the held write, then writes its own
        letting_go.join()
        records.finish(sup)
    asyncio.run(main())
    assert held == [True], "the loop turned while the disk held the write"
    with open(state.units_file) as f:
        assert json.load(f)["u1"]["pid"] == os.getpid() + 1


class Untouchable:
    spec = SimpleNamespace(argv=("x",), step=0, stop_timeout=5)

    @property
    def pid(self):
        raise AssertionError("a unit that did not change was looked at")


def test_a_change_of_one_unit_looks_at_that_unit_only_and_a_unit_gone_is_dropped(tmp_path):
    state = StateDir(str(tmp_path))
    sup = fake_supervisor(500)

    async def main():
        records = Records(state)
        records.write_units(sup)  # every unit looked at
        unchanged = sup.units["u3"].pid
        sup.units["u3"] = Untouchable()
        sup.units["u7"].pid = os.getpid() + 1
        sup.units["u8"].pid = 0  # exited
        records.changed(sup, "u7")
        records.changed(sup, "u8")
        deadline = time.monotonic() + 10
        while records._dirty or state.read_json(state.units_file)["u7"]["pid"] != os.getpid() + 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        return unchanged
    unchanged = asyncio.run(main())
    with open(state.units_file) as f:
        written = json.load(f)
    assert written["u3"]["pid"] == unchanged and "u8" not in written and len(written) == 499
