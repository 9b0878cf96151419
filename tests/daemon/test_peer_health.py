"""Health that means something (issue 22): with the fake Synapse, a process that refuses the
deployment's replication secret, and an instance_map address that reaches nothing, are shown
degraded with the reason, in `status` and `status --json`, while the others stay ready ok."""

from __future__ import annotations

import pytest
from helpers import wait_for

pytestmark = pytest.mark.integration


def test_a_deployment_whose_replication_works_is_ready_ok_and_not_degraded(running):
    """Every instance_map entry reaches its own process and shares the secret."""
    wait_for(lambda: all(u["state"] == "ready" for u in running.status()["units"]), what="all ready")
    main = running.unit("main")
    assert main["degraded"] is None and main["health"] == "ok"
    assert any(e["event"] == "ready" and e["name"] == "persister1" for e in running.events())
    assert not any(e["event"] == "replication_refused" for e in running.events())
    done = running.synsup("status")
    assert done.returncode == 0 and "degraded" not in done.stdout


def test_replication_that_fails_is_degraded_with_the_reason_and_the_rest_is_ready_ok(deployment):
    """Before: every unit `ready ok`, exit 0, while persister1 refused every replication request
    and instance_map.persister2 led nowhere. instance_map.persister2 says ::1 where persister2
    listens on 0.0.0.0 (IPv4 only): `synsup check` cannot tell, a replication request can."""
    deployment.behave("persister1", replication_secret="another")
    deployment.workers["persister2"]["worker_listeners"][0]["bind_addresses"] = ["0.0.0.0"]
    deployment.shared["instance_map"]["persister2"]["host"] = "::1"
    deployment.write()
    started = deployment.start()
    assert started.returncode == 0, started.stdout + started.stderr
    wait_for(lambda: deployment.unit("persister1")["degraded"] and deployment.unit("persister2")["degraded"],
             what="persister1 and persister2 degraded")
    status = deployment.status()
    units = {u["name"]: u for u in status["units"]}
    p1, p2 = units["persister1"]["degraded"], units["persister2"]["degraded"]
    assert p1.startswith("instance_map.persister1 (http://127.0.0.1:") and "answered 'HTTP/1.1 500" in p1
    assert "persister1 refuses the deployment's worker_replication_secret" in p1 and "secret'" not in p1
    assert p2.startswith("instance_map.persister2 (http://::1:") and "Connection refused" in p2
    assert f"persister2's replication listener (0.0.0.0:{deployment.ports[3]})" in p2
    assert all(units[n]["state"] == "ready" for n in units)
    assert all(not units[n]["degraded"] for n in units if n not in ("persister1", "persister2"))
    assert status["daemon"]["state"] == "degraded"
    text = deployment.synsup("status")
    assert text.returncode == 1
    assert "ready (degraded)" in text.stdout and f"  persister1: {p1}" in text.stdout
