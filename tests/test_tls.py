"""asyncio is imported without ssl (OpenSSL's 4.5 MB of RSS), and TLS still works when a probe
asks for it: ssl imported then, and given to asyncio. Run in a fresh interpreter (pytest has
imported asyncio and ssl long before)."""

from __future__ import annotations

import contextlib
import http.server
import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator

from etcd_server import certificates

PROBE = """
import sys
from synsup.supervisor.engine.probes import check
from synsup.supervisor.spec import HttpProbe
before = "ssl" in sys.modules
import asyncio, json
why = asyncio.run(check(HttpProbe(host="127.0.0.1", port={port}, tls=True), 10.0))
print(json.dumps([before, why, "ssl" in sys.modules]))
"""

STREAMS = """
import sys
import synsup.supervisor
from synsup.supervisor.tls import asyncio_tls
assert "ssl" not in sys.modules
import asyncio
async def get():
    ssl = asyncio_tls()
    context = ssl.create_default_context(cafile={ca!r})
    reader, writer = await asyncio.open_connection("127.0.0.1", {port}, ssl=context)
    writer.write(b"GET /health HTTP/1.0\\r\\n\\r\\n")
    line = await reader.readline()
    writer.close()
    return line.decode().strip()
print(asyncio.run(get()))
"""


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *_: object) -> None:
        pass


@contextlib.contextmanager
def https_health(directory: str) -> Iterator[tuple[int, str]]:
    """An HTTPS /health on a loopback port, in a thread (its port, its CA); shut down afterwards."""
    paths = certificates(directory)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(paths["server_cert"], paths["server_key"])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], paths["ca"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def in_fresh_interpreter(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def probe_in_fresh_interpreter(port: int) -> list:
    return json.loads(in_fresh_interpreter(PROBE.format(port=port)))


def test_a_tls_probe_imports_ssl_only_when_it_runs_and_is_healthy(tmp_path):
    with https_health(str(tmp_path)) as (port, _):
        before, why, after = probe_in_fresh_interpreter(port)
    assert before is False, "the engine's modules (asyncio among them) did not import ssl"
    assert why is None
    assert after is True


def test_a_tls_probe_of_a_plain_listener_fails_with_one_line(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _, why, _ = probe_in_fresh_interpreter(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
    assert why.startswith(f"http://127.0.0.1:{server.server_address[1]}/health: ") and "\n" not in why
    assert "Operation not permitted" not in why, "an SSL error's code is not an errno: its own words are said"


def test_asyncio_streams_speak_tls_once_asked_for_it_as_the_store_client_does(tmp_path):
    with https_health(str(tmp_path)) as (port, ca):
        answer = in_fresh_interpreter(STREAMS.format(port=port, ca=ca))
    assert answer.strip() == "HTTP/1.0 200 OK"
