"""synsup's metric families, read back through prometheus_client's own parser."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from types import SimpleNamespace

from fakes import FakeClock, FakeSpawner, until
from prometheus_client.parser import text_string_to_metric_families

from synsup.supervisor.daemon.metrics import Exposition
from synsup.supervisor.daemon.telemetry import Telemetry
from synsup.supervisor.engine.resources import ResourceSampler
from synsup.supervisor.engine.supervisor import Supervisor
from synsup.supervisor.engine.unit import Timing
from synsup.supervisor.engine.unit_state import UnitState
from synsup.supervisor.protocol import ReloadOutcome, ReloadResult
from synsup.supervisor.source import Loaded
from synsup.supervisor.spec import UnitSpec

S = UnitState
TIMING = Timing(liveness_interval=None, notify_grace=0.0)
SPECS = [UnitSpec(name="main", argv=("fake",), notify=False, app="synapse.app.homeserver", kind="main"),
         UnitSpec(name="persister1", argv=("fake",), notify=False, app="synapse.app.generic_worker",
                  group="event_persisters", step=1)]


def samples(text: bytes) -> dict[tuple[str, frozenset], float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found, metric, **labels):
    return found[(metric, frozenset(labels.items()))]


def scrape_after(scenario, tmp_path) -> dict:
    result = {}

    async def main():
        clock, spawner = FakeClock(), FakeSpawner()
        sup = Supervisor(SPECS, log_dir=str(tmp_path), notify_dir=None, clock=clock, spawner=spawner, timing=TIMING)
        view = SimpleNamespace(supervisor=sup, current=Loaded(SPECS, info={"synapse_version": "1.140.0"}),
                               reloads=SimpleNamespace(generation=3),
                               operations=SimpleNamespace(current=None))
        telemetry = Telemetry()
        await telemetry.start(view)
        async with asyncio.TaskGroup() as group:
            sup.spawn_tasks(group)
            try:
                await scenario(sup, clock, spawner, telemetry)
                result["found"] = samples(Exposition(view, telemetry.tallies, ResourceSampler()).render())
            finally:
                sup.cancel_tasks()
        telemetry.close()
        sup.close()
    asyncio.run(main())
    return result["found"]


def test_states_restarts_exits_and_start_seconds(tmp_path):
    async def scenario(sup, clock, spawner, telemetry):
        sup.start_all()
        await until(lambda: sup.all_ready())
        clock.advance(61)
        spawner.children[1].exit(1)  # persister1 crashes after a minute: restarted at once
        await until(lambda: len(spawner.children) == 3)
        clock.advance(2.5)
        await until(lambda: sup.units["persister1"].state is S.READY)
        telemetry.reload_done(ReloadOutcome(ReloadResult.REJECTED, errors=["x.yaml:1: error: bad"]))
        telemetry.reload_done(ReloadOutcome(ReloadResult.APPLIED))

    found = scrape_after(scenario, tmp_path)
    p1 = {"unit": "persister1", "app": "synapse.app.generic_worker", "group": "event_persisters",
          "instance": "persister1"}
    main = {"unit": "main", "app": "synapse.app.homeserver", "group": "", "instance": "main"}
    assert value(found, "synsup_unit_state", **p1, state="ready") == 1
    assert value(found, "synsup_unit_state", **p1, state="failed") == 0
    assert value(found, "synsup_unit_ready", **main) == 1
    assert value(found, "synsup_unit_restarts_total", **p1) == 1
    assert value(found, "synsup_unit_restarts_total", **main) == 0
    assert value(found, "synsup_unit_exits_total", **p1, reason="exit_code") == 1
    assert value(found, "synsup_unit_exits_total", **p1, reason="signal") == 0
    assert value(found, "synsup_unit_start_seconds_count", **p1) == 2
    assert value(found, "synsup_unit_start_seconds_bucket", **p1, le="1.0") == 1  # 0 s, then 2.5 s
    assert value(found, "synsup_unit_start_seconds_bucket", **p1, le="2.0") == 1
    assert value(found, "synsup_unit_start_seconds_bucket", **p1, le="3.0") == 2  # resolves 1-10 s
    assert value(found, "synsup_unit_start_seconds_bucket", **p1, le="5.0") == 2
    assert value(found, "synsup_unit_start_seconds_sum", **p1) == 2.5
    assert ("synsup_unit_probe_seconds_count", frozenset(p1.items())) not in found  # it has no probes
    assert value(found, "synsup_reloads_total", result="rejected") == 1
    assert value(found, "synsup_reloads_total", result="applied") == 1
    assert value(found, "synsup_reloads_total", result="partial") == 0
    assert value(found, "synsup_config_generation") == 3
    assert value(found, "synsup_last_reload_timestamp_seconds") > 1.7e9
    assert ("synsup_info", frozenset({"version": "0.1.0", "synapse_version": "1.140.0"}.items())) in found
    assert value(found, "synsup_operation", name="none") == 1


def test_a_degraded_unit_is_counted_until_its_peers_reach_it_again(tmp_path):
    async def scenario(sup, clock, spawner, telemetry):
        sup.start_all()
        await until(lambda: sup.all_ready())
        await sup.units["persister1"].peers._set("instance_map.persister1 (...): Connection refused")

    found = scrape_after(scenario, tmp_path)
    p1 = {"unit": "persister1", "app": "synapse.app.generic_worker", "group": "event_persisters",
          "instance": "persister1"}
    assert value(found, "synsup_unit_degraded", **p1) == 1 and value(found, "synsup_unit_ready", **p1) == 1
    assert value(found, "synsup_unit_degraded", unit="main", app="synapse.app.homeserver", group="",
                 instance="main") == 0


def test_stop_counts_as_stopped_not_a_crash(tmp_path):
    async def scenario(sup, clock, spawner, telemetry):
        sup.start_all()
        await until(lambda: sup.all_ready())
        await sup.stop_all()

    found = scrape_after(scenario, tmp_path)
    p1 = {"unit": "persister1", "app": "synapse.app.generic_worker", "group": "event_persisters",
          "instance": "persister1"}
    assert value(found, "synsup_unit_exits_total", **p1, reason="stopped") == 1
    assert value(found, "synsup_unit_exits_total", **p1, reason="signal") == 0
    assert value(found, "synsup_unit_state", **p1, state="stopped") == 1


def test_resources_of_a_process_tree():
    child = subprocess.Popen([sys.executable, "-c", "import subprocess, sys; sum(range(3 * 10**6)); "
                              "subprocess.run([sys.executable, '-c', 'import time; time.sleep(60)'])"])
    try:
        sampler = ResourceSampler()
        from helpers import wait_for
        wait_for(lambda: len(sampler.tree(child.pid)) == 2, what="the grandchild")
        usage = sampler.usage(child.pid)
        assert usage is not None and usage.rss_bytes > 2 * 1024 * 1024 and usage.open_fds >= 6
        assert usage.cpu_seconds > 0
        assert sampler.cpu_percent(child.pid, usage) >= 0
    finally:
        for pid in ResourceSampler().tree(child.pid)[::-1]:
            subprocess.run(["kill", "-9", str(pid)])
        child.wait()
    assert ResourceSampler().usage(child.pid) is None


def test_probe_times_and_failures_of_units_with_probes(tmp_path):
    from synsup.supervisor.spec import HttpProbe
    specs = [UnitSpec(name="generic1", argv=("fake",), probes=(HttpProbe(host="127.0.0.1", port=1),))]

    async def main():
        sup = Supervisor(specs, log_dir=str(tmp_path), notify_dir=None, clock=FakeClock(), timing=TIMING)
        view = SimpleNamespace(supervisor=sup, current=Loaded(specs), reloads=SimpleNamespace(generation=1),
                               operations=SimpleNamespace(current=None))
        tally = sup.units["generic1"].probe_tally
        tally.observe(0.0004, False)
        tally.observe(0.05, True)
        found = samples(Exposition(view, Telemetry().tallies, ResourceSampler()).render())
        sup.close()
        return found

    found = asyncio.run(main())
    g1 = {"unit": "generic1", "app": "", "group": "", "instance": "generic1"}
    assert value(found, "synsup_unit_probe_seconds_bucket", **g1, le="0.001") == 1
    assert value(found, "synsup_unit_probe_seconds_bucket", **g1, le="0.1") == 2
    assert value(found, "synsup_unit_probe_seconds_count", **g1) == 2
    assert value(found, "synsup_unit_probe_failures_total", **g1) == 1


def test_unit_series_join_synapses_own_on_the_instance_of_its_scrape_target():
    from synsup.supervisor.daemon.metrics import UnitLabels
    from synsup.supervisor.daemon.scrape_targets import target_groups
    spec = UnitSpec(name="generic1", argv=("x",), app="synapse.app.generic_worker", metrics=("127.0.0.1:9101",),
                    metrics_labels=(("job", "synapse"),))
    [group] = target_groups([spec])
    text = UnitLabels().of(SimpleNamespace(spec=spec))  # type: ignore[arg-type]
    assert f'instance="{group["labels"]["instance"]}"' in text and group["labels"]["instance"] == "generic1"


def test_synsup_info_has_a_series_per_unit_version_when_units_differ(tmp_path):
    import dataclasses
    global SPECS
    saved = SPECS
    SPECS = [dataclasses.replace(SPECS[0], version="1.163.2", code_name="Synapse"),
             dataclasses.replace(SPECS[1], version="1.163.1", code_name="Synapse")]

    async def scenario(sup, clock, spawner, telemetry):
        pass
    try:
        found = scrape_after(scenario, tmp_path)
    finally:
        SPECS = saved
    infos = [dict(labels) for name, labels in found if name == "synsup_info"]
    assert sorted(infos, key=lambda i: i["synapse_version"]) == [
        {"version": "0.1.0", "synapse_version": "1.163.1", "units": "persister1"},
        {"version": "0.1.0", "synapse_version": "1.163.2", "units": "main"}]


# -- the metrics listener (`--metrics`)
def _serve(path, routes=None, **limits):
    from synsup.supervisor.daemon.metrics_server import MetricsAddress, MetricsServer
    return MetricsServer(MetricsAddress(path=path), routes or {"/metrics": lambda: (b"x 1\n", "text/plain")},
                         **limits)


def test_metrics_path_refuses_anything_but_a_stale_socket_of_ours(short_dir):
    """--metrics PATH deleted a regular file at PATH and put its socket there."""
    import os
    import socket

    import pytest

    from synsup.supervisor.daemon.metrics_server import MetricsAddressError
    path = os.path.join(short_dir, "metrics.sock")

    async def start(server):
        await server.start()
        server.close()

    with open(path, "w") as f:
        f.write("precious\n")
    with pytest.raises(MetricsAddressError, match=f"--metrics unix:{path}: .*is not a socket"):
        asyncio.run(start(_serve(path)))
    with open(path) as f:
        assert f.read() == "precious\n"
    os.unlink(path)
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(path)
        live.listen()
        with pytest.raises(MetricsAddressError, match="in use"):
            asyncio.run(start(_serve(path)))
        assert os.path.exists(path)
    asyncio.run(start(_serve(path)))  # the socket left by a listener that is gone: ours to replace
    assert not os.path.exists(path)


def test_metrics_listener_caps_connections_and_drops_idle_ones(short_dir):
    import os

    path = os.path.join(short_dir, "metrics.sock")

    async def main():
        server = _serve(path, max_connections=2, request_timeout=0.3)
        await server.start()
        try:
            idle = [await asyncio.open_unix_connection(path) for _ in range(2)]
            await until(lambda: server.connections == 2, 100_000)
            reader, writer = await asyncio.open_unix_connection(path)
            writer.write(b"GET /metrics HTTP/1.1\r\n\r\n")
            async with asyncio.timeout(5):
                refused = await reader.read()
            assert refused.startswith(b"HTTP/1.1 503")
            writer.close()
            async with asyncio.timeout(5):
                assert [await r.read() for r, _ in idle] == [b"", b""]  # dropped after the idle timeout
            reader, writer = await asyncio.open_unix_connection(path)
            writer.write(b"GET /metrics HTTP/1.1\r\n\r\n")
            async with asyncio.timeout(5):
                assert (await reader.read()).endswith(b"x 1\n")
            for _, w in idle:
                w.close()
            writer.close()
        finally:
            server.close()
    asyncio.run(main())
