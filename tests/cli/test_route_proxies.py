"""The configuration `synsup routes` prints runs as it is in real HAProxy and nginx, and each
request reaches the process its category names: tiny HTTP servers stand in for Synapse's
processes and answer with their name (skipped off CI when a proxy binary is missing)."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import urllib.request

import pytest
from helpers import binary, free_ports, listener, modern_deployment, wait_for, worker, write_deployment

from synsup.units.loader import load_deployment
from synsup.units.route_render import haproxy, nginx
from synsup.units.route_source import patterns_of
from synsup.units.routes import route_table

# path and method -> the process that must answer it
EXPECTED = [
    ("GET", "/_matrix/client/v3/sync?since=s1", "generic1"),
    ("PUT", "/_matrix/client/v3/rooms/!r:example.org/typing/@u:example.org", "generic2"),  # the typing writer
    ("PUT", "/_matrix/client/v3/rooms/!r:example.org/send/m.room.message/t1", "generic2"),  # event_sending
    ("GET", "/_matrix/client/v3/rooms/!r:example.org/members", "generic1"),  # client reads
    ("GET", "/_matrix/client/v3/pushrules/", "main"),  # push_rules written by main
    ("POST", "/_matrix/client/v3/login", "main"),  # registration: no worker list takes it
    ("GET", "/_matrix/media/v3/download/example.org/abc", "media1"),
]


def serve(name, port):
    class Answer(http.server.BaseHTTPRequestHandler):
        def answer(self):
            body = name.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_PUT = do_POST = answer

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def deployment_served(tmp_path):
    ports = free_ports(6)
    shared, workers = modern_deployment()
    shared["listeners"][0]["port"] = ports[0]
    workers["generic1"] = worker("generic1", listener(ports[1], "client", "federation"))
    workers["generic2"] = worker("generic2", listener(ports[2], "client"), listener(9103, "replication"))
    workers["media1"] = worker("media1", listener(ports[3], "media"), enable_media_repo=True)
    shared["instance_map"]["generic2"] = {"host": "127.0.0.1", "port": 9103}
    shared["stream_writers"]["typing"] = "generic2"
    config, workers_dir = write_deployment(str(tmp_path), shared, workers)
    servers = [serve(name, port) for name, port in zip(("main", "generic1", "generic2", "media1"), ports)]
    yield load_deployment([config], workers_dir, sys.executable).deployment, ports[4]
    for server in servers:
        server.shutdown()
        server.server_close()


def table_of(d, tmp_path):
    routes = tmp_path / "routes.yaml"
    routes.write_text("sync: generic1\nclient: generic1\nevent_sending: generic2\n")
    table = route_table(d, patterns_of(d), str(routes))
    assert table.errors == []
    return table


def start_haproxy(tmp_path, d, port):
    (tmp_path / "haproxy.cfg").write_text(haproxy(table_of(d, tmp_path), f"127.0.0.1:{port}",
                                                  str(tmp_path / "admin.sock"), ["t"]))
    return [binary("haproxy"), "-db", "-f", str(tmp_path / "haproxy.cfg")]


def start_nginx(tmp_path, d, port):
    (tmp_path / "routes.conf").write_text(nginx(table_of(d, tmp_path), f"127.0.0.1:{port}", ["t"]))
    (tmp_path / "nginx.conf").write_text(f"daemon off;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
                                         f"events {{}}\nhttp {{\n  access_log off;\n  include {tmp_path}/routes.conf;\n}}\n")
    return [binary("nginx"), "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")]


def who_answers(port, method, path):
    body = b"{}" if method != "GET" else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=body)
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.read().decode()
    except OSError:
        return None


@pytest.mark.parametrize("start", [start_haproxy, start_nginx], ids=["haproxy", "nginx"])
def test_each_request_reaches_its_process_through_the_proxy(tmp_path, deployment_served, start):
    d, port = deployment_served
    with open(tmp_path / "proxy.log", "wb") as log:
        proxy = subprocess.Popen(start(tmp_path, d, port), stdout=log, stderr=log, cwd=str(tmp_path))
    try:
        wait_for(lambda: who_answers(port, "GET", "/health") == "main", timeout=20, what="the proxy answering")
        answered = [(method, path, who_answers(port, method, path)) for method, path, _ in EXPECTED]
        assert answered == [(method, path, name) for method, path, name in EXPECTED]
    finally:
        proxy.terminate()
        proxy.wait(timeout=20)
