"""Membership against a real etcd: each daemon registers members/<node> under a lease it keeps
alive, the first one up holds the leader key, and `synsup status --cluster` reads it all from the
store. In process (two Memberships, one store) and end to end (`synsup start --cluster`)."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import yaml
from etcd_server import EtcdServer
from helpers import Deployment, free_ports, processes_with, wait_for

from synsup.supervisor.cluster.cluster_status import read_cluster_status
from synsup.supervisor.cluster.etcd_gateway import EtcdGateway
from synsup.supervisor.cluster.membership import MemberRecord, Membership
from synsup.supervisor.cluster.store import StoreUnreachable
from synsup.supervisor.cluster_config import ClusterConfig
from synsup.supervisor.errors import SynsupError

pytestmark = pytest.mark.integration
TTL = 2


class Partitionable(EtcdGateway):
    """The store as one node sees it: `cut` makes every call fail as if the network were down."""

    cut = False

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.cut:
            raise StoreUnreachable("cut off by the test")
        return await super().call(path, body)


def member(cluster: ClusterConfig, node: str) -> Membership:
    record = MemberRecord(node, cluster.nodes[node].address, "9.9.9", f"digest-{node}", 0.0)
    return Membership(cluster, node, record, Partitionable(list(cluster.store.endpoints)))


async def status(cluster: ClusterConfig) -> dict[str, Any]:
    return await read_cluster_status(cluster, EtcdGateway(list(cluster.store.endpoints)))


async def until(condition: Callable[[dict[str, Any]], bool], cluster: ClusterConfig, timeout: float,
                what: str) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not condition(report := await status(cluster)):
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}: {report}"
        await asyncio.sleep(0.1)
    return report


def up(report: dict[str, Any]) -> dict[str, bool]:
    return {n["name"]: n["up"] for n in report["nodes"]}


def run(body: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(body())


def test_two_daemons_register_and_the_first_one_up_leads(cluster: ClusterConfig) -> None:
    async def body() -> dict[str, Any]:
        a, b = member(cluster, "a"), member(cluster, "b")
        await a.start()
        await b.start()
        try:
            return await status(cluster)
        finally:
            await b.close()
            await a.close()
    report = run(body)
    assert report["leader"] == "a" and (report["units"], report["plan"]) == ([], None)
    assert [{k: n[k] for k in ("name", "up", "address", "config_digest", "version")} for n in report["nodes"]] == [
        {"name": "a", "up": True, "address": "10.0.0.1", "config_digest": "digest-a", "version": "9.9.9"},
        {"name": "b", "up": True, "address": "10.0.0.2", "config_digest": "digest-b", "version": "9.9.9"}]


def test_leaving_removes_the_keys_at_once_and_the_other_node_takes_the_lead(cluster: ClusterConfig) -> None:
    async def body() -> tuple[dict[str, Any], dict[str, Any]]:
        a, b = member(cluster, "a"), member(cluster, "b")
        await a.start()
        await b.start()
        try:
            await a.close()
            at_once = await status(cluster)  # revoked: no waiting for the TTL
            return at_once, await until(lambda r: r["leader"] == "b", cluster, TTL + 2, "b to take the lead")
        finally:
            await b.close()
    at_once, later = run(body)
    assert up(at_once) == {"a": False, "b": True} and at_once["leader"] in (None, "b")
    assert up(later) == {"a": False, "b": True}


def test_a_node_cut_off_expires_then_rejoins_when_the_store_is_back(cluster: ClusterConfig) -> None:
    async def body() -> tuple[float, dict[str, Any], dict[str, Any]]:
        a, b = member(cluster, "a"), member(cluster, "b")
        await a.start()
        await b.start()
        try:
            assert isinstance(a.store, Partitionable)
            a.store.cut, cut_at = True, time.monotonic()
            gone = await until(lambda r: r["leader"] == "b" and not up(r)["a"], cluster, TTL + 3, "a's lease to end")
            expired_after = time.monotonic() - cut_at
            a.store.cut = False
            back = await until(lambda r: up(r)["a"], cluster, TTL + 2, "a to register again")
            return expired_after, gone, back
        finally:
            await a.close()
            await b.close()
    expired_after, gone, back = run(body)
    # renewed at most TTL/3 before the cut, so the lease ends from 2/3 of the TTL after it on
    assert expired_after >= TTL * 2 / 3 - 0.2, "a went down before its lease could have ended"
    assert up(gone) == {"a": False, "b": True}
    assert back["leader"] == "b", "the node that came back does not take the lead from the one holding it"


def test_a_node_cut_off_hears_its_lease_lost_once_a_ttl_after_its_last_renewal_not_before(
        cluster: ClusterConfig) -> None:
    """What `self_fence` acts on: the store cannot say so to a node that does not reach it, so the
    node counts itself: a TTL after the last renewal the store answered, the lease has surely ended."""
    async def body() -> tuple[float, int, int]:
        a = member(cluster, "a")
        lost: list[float] = []
        a.on_lease_lost = lambda: lost.append(time.monotonic())
        await a.start()
        try:
            assert isinstance(a.store, Partitionable)
            await asyncio.sleep(TTL * 1.5)  # renewing: never lost (a fixed span of time is what is tested)
            renewing = len(lost)
            a.store.cut, cut_at = True, time.monotonic()
            deadline = cut_at + TTL * 3
            while not lost and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            after = lost[0] - cut_at if lost else float("inf")
            a.store.cut = False
            await until(lambda r: up(r)["a"], cluster, TTL + 2, "a to register again")
            return after, renewing, len(lost)
        finally:
            await a.close()
    after, renewing, total = run(body)
    assert renewing == 0, "a node that renews its lease never hears it lost"
    assert TTL * 2 / 3 - 0.2 <= after <= TTL + TTL / 3 + 0.5, f"heard lost {after:.2f}s after the cut (ttl {TTL}s)"
    assert total == 1, "once per loss"


def test_a_store_that_does_not_answer_at_start_is_one_line_naming_cluster_yaml(cluster: ClusterConfig) -> None:
    dead = f"http://127.0.0.1:{free_ports(1)[0]}"
    a = member(cluster, "a")
    a.store = EtcdGateway([dead])
    with pytest.raises(SynsupError) as raised:
        run(a.start)
    assert str(raised.value).startswith(f"cluster.yaml: store.endpoints: the store (etcd) answers on none of its "
                                        f"endpoints: {dead}: ")
    assert str(raised.value).endswith("; start etcd there or correct the endpoints")


# -- end to end: `synsup start --cluster F --node a`, `synsup status --cluster F`


@pytest.fixture
def cluster_file(deployment: Deployment, etcd: EtcdServer) -> str:
    """Every process of the fake deployment on node a (loopback is fine on one host); b has none."""
    names = ["main", "redis", *deployment.workers]
    path = os.path.join(deployment.root, "cluster.yaml")
    with open(path, "w") as f:
        yaml.safe_dump({"name": "e2e", "store": {"endpoints": [etcd.url], "prefix": f"/test/{uuid.uuid4().hex}",
                                                 "ttl": TTL},
                        "nodes": {"a": {"address": "10.0.0.1"}, "b": {"address": "10.0.0.2"}},
                        "placement": {name: "a" for name in names}}, f)
    return path


def test_a_started_daemon_is_a_member_until_it_stops(deployment: Deployment, cluster_file: str) -> None:
    done = deployment.synsup("start", "--cluster", cluster_file, "--node", "a", config=True)
    assert done.returncode == 0, done.stdout + done.stderr
    try:
        shown = wait_for(lambda: published_ready(deployment, cluster_file), timeout=10, what="a's units published")
        report = json.loads(shown.stdout)
        assert shown.returncode == 1, "node b is down: degraded"
        assert report["leader"] == "a" and report["plan"] is None
        pids = deployment.pids()
        assert report["units"] == [{"name": u["name"], "node": "a", "state": "ready", "pid": pids.get(u["name"])}
                                   for u in deployment.status()["units"]]
        assert {u["name"] for u in report["units"]} == {"redis", "postgres", "main", *deployment.workers}
        a, b = report["nodes"]
        assert (a["name"], a["up"], a["address"], len(a["config_digest"])) == ("a", True, "10.0.0.1", 64)
        assert (b["name"], b["up"], b["config_digest"]) == ("b", False, None)
        table = deployment.synsup("status", "--cluster", cluster_file).stdout.splitlines()
        assert table[0] == "cluster e2e: leader a" and table[2].split()[:3] == ["a", "up", "10.0.0.1"]
        assert table[4].split() == ["UNIT", "NODE", "STATE", "PID"]
        assert ["main", "a", "ready", str(pids["main"])] in [line.split() for line in table[5:]]
    finally:
        assert deployment.synsup("stop").returncode == 0
    report = json.loads(deployment.synsup("status", "--cluster", cluster_file, "--json").stdout)
    assert report["leader"] is None and not report["nodes"][0]["up"], "stopping left the cluster at once"
    wait_for(lambda: not processes_with(deployment.control), timeout=10, what="every process to be gone")


def published_ready(deployment: Deployment, cluster_file: str) -> Any:
    """`status --cluster --json` once every unit it lists is ready, else None."""
    shown = deployment.synsup("status", "--cluster", cluster_file, "--json")
    units = json.loads(shown.stdout)["units"] if shown.stdout else []
    return shown if units and all(u["state"] == "ready" for u in units) else None


def test_start_with_an_unknown_node_starts_nothing(deployment: Deployment, cluster_file: str) -> None:
    done = deployment.synsup("start", "--cluster", cluster_file, "--node", "z", config=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().endswith(f"synsup: error: {cluster_file}: nodes: --node z is not a node of "
                                        "cluster e2e; pass --node with one of a, b")
    assert not os.path.exists(os.path.join(deployment.state_dir, "synsup.sock"))


def test_status_with_the_store_down_exits_3(deployment: Deployment, cluster_file: str) -> None:
    with open(cluster_file) as f:
        config = yaml.safe_load(f)
    config["store"]["endpoints"] = [f"http://127.0.0.1:{free_ports(1)[0]}"]
    with open(cluster_file, "w") as f:
        yaml.safe_dump(config, f)
    done = deployment.synsup("status", "--cluster", cluster_file, "--json")
    assert done.returncode == 3 and done.stdout == ""
    assert done.stderr.startswith("synsup: error: the store (etcd) answers on none of its endpoints: ")
    assert len(done.stderr.splitlines()) == 1


def test_an_unexpected_error_in_a_renewal_does_not_end_the_keepalive(cluster: ClusterConfig) -> None:
    """One malformed answer (here: keepalive raising KeyError once) is logged; the lease is renewed
    again at the next period, so the node never drops out."""
    class OnceBroken(Partitionable):
        broken = 1

        async def keepalive(self, lease: int) -> int:
            if self.broken:
                self.broken -= 1
                raise KeyError("TTL")
            return await super().keepalive(lease)

    async def body() -> list[bool]:
        a = Membership(cluster, "a", MemberRecord("a", "10.0.0.1", "9", "d", 0.0),
                       OnceBroken(list(cluster.store.endpoints)))
        await a.start()
        try:
            seen = []
            end = time.monotonic() + TTL * 2.5
            while time.monotonic() < end:
                seen.append(up(await status(cluster))["a"])
                await asyncio.sleep(0.2)
            return seen
        finally:
            await a.close()
    assert all(run(body)), "a dropped out after one failed renewal"
