"""The resource sampler's cache (engine/resources.py) is bounded by the live units: it was
trimmed only by a /metrics scrape, so with --metrics off every restart seen by `status` (or
`synsup top`) left about 1.1 kB behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from types import SimpleNamespace

from fakes import FakeClock, run_supervisor, until

from synsup.supervisor.daemon.telemetry import Telemetry
from synsup.supervisor.engine.health import Timing
from synsup.supervisor.engine.resources import ResourceSampler
from synsup.supervisor.engine.restart_policy import RestartPolicy
from synsup.supervisor.engine.unit_state import UnitState
from synsup.supervisor.spec import UnitSpec


def sampler_entries(telemetry: Telemetry) -> int:
    sampler = telemetry.sampler
    return len(sampler._cpu) + len(sampler._started) + len(sampler._seen)


def test_a_thousand_restarts_seen_by_status_leave_the_sampler_cache_bounded(tmp_path):
    sizes = []

    async def scenario(sup, clock, spawner):
        telemetry = Telemetry()  # --metrics off
        await telemetry.start(SimpleNamespace(supervisor=sup))
        unit = sup.units["u"]
        unit.policy = RestartPolicy(stable_after=0.0)
        sup.start_all()
        for _ in range(1000):
            child = await spawner.next_child()  # a new pid each time
            await until(lambda: unit.state is UnitState.READY)
            clock.advance(100)
            telemetry.usage([unit])  # `synsup status` / `top`
            sizes.append(sampler_entries(telemetry))
            child.exit(1)
        telemetry.close()
    run_supervisor(scenario, [UnitSpec(name="u", argv=("x",), notify=False)], tmp_path,
                   Timing(notify_grace=0.0, liveness_interval=None), FakeClock())
    assert max(sizes) <= 3, sizes[-5:]


def test_a_units_own_process_is_read_from_kept_files_and_a_gone_one_reads_as_gone(monkeypatch):
    """A scrape of 500 units opened and closed two /proc files per unit each time; a root's
    files are now kept open and read again with pread (procfs makes them anew at offset 0)."""
    busy = subprocess.Popen([sys.executable, "-c", "import time\nwhile True: sum(range(10000))"])
    sampler = ResourceSampler()
    try:
        first = sampler.usage(busy.pid)
        opened = []
        plain_open = os.open
        monkeypatch.setattr(os, "open", lambda *a, **k: opened.append(a[0]) or plain_open(*a, **k))
        deadline = time.monotonic() + 10
        while (later := sampler.usage(busy.pid)).cpu_seconds <= first.cpu_seconds:  # fresh figures
            assert time.monotonic() < deadline, "the kept stat file showed no new CPU time"
            time.sleep(0.05)
        assert opened == [], "nothing opened to read a kept root again"
        assert later.rss_bytes > 0 and later.open_fds >= 3
        sampler.prune()
        assert list(sampler._kept) == [busy.pid]
        busy.kill()
        busy.wait()
        assert sampler.usage(busy.pid) is None
        assert sampler._kept == {}, "a gone root's files are closed"
    finally:
        busy.kill()
        busy.wait()
        sampler.close()


def test_kept_root_files_are_closed_when_no_longer_seen_and_bounded_by_the_fd_limit():
    sleepers = [subprocess.Popen(["sleep", "30"]) for _ in range(3)]
    sampler = ResourceSampler()
    try:
        sampler._keep_at_most = 2  # as from a low RLIMIT_NOFILE
        usages = [sampler.usage(p.pid) for p in sleepers]
        # not rss: the kernel sums a new process's RSS per CPU in batches; /proc/PID/stat may show 0
        assert all(u is not None and u.open_fds >= 3 for u in usages), "the third read anew"
        assert len(sampler._kept) == 2
        sampler.prune()
        sampler.usage(sleepers[0].pid)
        sampler.prune()  # the others were not read since: their files are closed
        assert list(sampler._kept) == [sleepers[0].pid]
    finally:
        for p in sleepers:
            p.kill()
            p.wait()
        sampler.close()
