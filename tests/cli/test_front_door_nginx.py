"""`synsup start --proxy nginx:FILE` with real nginx (Debian's, run by the test; its http {} includes
the conf.d the routes file is written to): synsup writes the file at start and reloads nginx, and
after a topology change (a worker added by `synsup reload`) writes it again, keeping a backup."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess

import pytest
from helpers import binary, free_ports, listener, wait_for, worker


def answered_by(port: int, path: str = "/_matrix/client/v3/sync?timeout=0") -> str | None:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", path, headers={"Authorization": "Bearer syt_dXNlcg_abc"})
        reply = connection.getresponse()
        connection.close()
        return reply.getheader("X-Fake-Synapse") if reply.status == 200 else None
    except OSError:
        return None


def text_of(path: str) -> str:
    with open(path) as f:
        return f.read()


@pytest.fixture
def nginx_running(short_dir):
    nginx = binary("nginx")
    os.makedirs(os.path.join(short_dir, "conf.d"))
    config = os.path.join(short_dir, "nginx.conf")
    with open(config, "w") as f:
        f.write(f"daemon off;\npid {short_dir}/nginx.pid;\nerror_log {short_dir}/error.log;\nevents {{}}\n"
                f"http {{\n  access_log off;\n  include {short_dir}/conf.d/*.conf;\n}}\n")
    with open(os.path.join(short_dir, "nginx.log"), "wb") as log:
        proxy = subprocess.Popen([nginx, "-p", short_dir, "-c", config], stdout=log, stderr=log)
    wait_for(lambda: os.path.exists(os.path.join(short_dir, "nginx.pid")), what="nginx's pid file")
    yield f"{nginx} -p {short_dir} -c {config} -s reload"
    proxy.send_signal(signal.SIGQUIT)
    proxy.wait(timeout=20)


def test_routes_file_written_at_start_and_after_a_topology_change(deployment, nginx_running, short_dir):
    port, routes = free_ports(1)[0], os.path.join(short_dir, "conf.d", "synapse-routes.conf")
    done = deployment.synsup("start", "--proxy", f"nginx:{routes}", "--proxy-listen", f"127.0.0.1:{port}",
                             "--proxy-reload", nginx_running, config=True)
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: answered_by(port) == "generic1", what="nginx sending sync to generic1")
    status = deployment.status()
    assert status["daemon"]["proxy"] == {"kind": "nginx", "target": routes, "ok": True, "error": None, "drains": False}
    assert {u["name"]: u["proxy"] for u in status["units"]}["generic1"] == "ready"

    new_port = free_ports(1)[0]
    deployment.workers["generic2"] = worker("generic2", listener(new_port, "client"))
    deployment.write()
    assert deployment.synsup("reload").returncode == 0
    wait_for(lambda: "# generic2" in text_of(routes), what="generic2 in the routes file")
    assert "# generic2" not in text_of(routes + ".bak")
    wait_for(lambda: answered_by(port, "/_matrix/client/v3/rooms/!r:x/members") == "generic2"
             or answered_by(port, "/_matrix/client/v3/rooms/!r:y/members") == "generic2",
             what="nginx, reloaded, sending client reads to generic2 too")


def test_nginx_reload_failing_is_a_warning_and_units_run_on(deployment, short_dir):
    routes = os.path.join(short_dir, "synapse-routes.conf")
    done = deployment.synsup("start", "--proxy", f"nginx:{routes}", "--proxy-reload", "false", config=True)
    assert done.returncode == 0, done.stdout + done.stderr
    proxy = wait_for(lambda: (p := deployment.status()["daemon"]["proxy"])["error"] and p, what="the warning")
    assert proxy["ok"] is False and "`false` failed" in proxy["error"] and routes in proxy["error"]
    assert all(u["state"] == "ready" for u in deployment.status()["units"])
    assert not os.path.exists(routes)  # no file nginx has not taken
