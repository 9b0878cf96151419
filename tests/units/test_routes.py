"""`synsup routes`: the route table (categories, stream writers, routes file), the HAProxy and nginx
text, the patterns' source (the installed Synapse, or the v1.66 table), and --diff."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

import pytest
import yaml
from helpers import FAKE_SYNAPSE, binary, listener, modern_deployment, worker, write_deployment

from synsup.supervisor.source import Loaded
from synsup.units.loader import load_deployment
from synsup.units.proxy_routes import proxy_layout
from synsup.units.route_diff import route_changes, routes_in
from synsup.units.route_render import haproxy, nginx, route_map, summary
from synsup.units.route_source import RoutePatterns, from_synapse, patterns_of
from synsup.units.route_table import CATEGORIES, TABLE_V166, TABLE_VALID_FOR
from synsup.units.routes import route_table

TABLE = RoutePatterns({**TABLE_V166, "media": (("*", "^/_matrix/media/"),)}, "test table")


def deployment(tmp_path, shared=None, workers=None):
    base_shared, base_workers = modern_deployment()
    config, workers_dir = write_deployment(str(tmp_path), shared or base_shared, workers or base_workers)
    loaded = load_deployment([config], workers_dir, sys.executable)
    assert loaded.deployment is not None, loaded.findings
    return loaded.deployment


def with_typing_writers(*writers):
    """generic1 and generic2 with client listeners; typing written by `writers`."""
    shared, workers = modern_deployment()
    workers["generic2"] = worker("generic2", listener(8082, "client"), listener(9103, "replication"))
    shared["instance_map"]["generic2"] = {"host": "127.0.0.1", "port": 9103}
    shared["instance_map"]["generic1"] = {"host": "127.0.0.1", "port": 9104}
    workers["generic1"]["worker_listeners"].append(listener(9104, "replication"))
    shared["stream_writers"]["typing"] = list(writers)
    return shared, workers


def routed(table):
    return {r.category: [s.name for s in r.servers] for r in table.routes}


def test_without_routes_file_client_workers_take_sync_and_client_reads_federation_workers_federation(tmp_path):
    table = route_table(deployment(tmp_path), TABLE)
    assert table.errors == []
    got = routed(table)
    assert got["sync"] == got["client"] == got["federation"] == got["federation_inbound"] == ["generic1"]
    assert got["typing"] == got["to_device"] == ["main"]  # no writer configured: main writes them
    assert "event_sending" not in got and table.main.name == "main" and table.main.port == 8008
    text = haproxy(table, "127.0.0.1:8080", "127.0.0.1:9999", [])
    assert "use_backend %[str(typing),map(/dev/null,main)] if typing_any !typing_unrouted" in text  # main's backend
    assert "use_backend %[str(event_sending),map(/dev/null,none)] if event_sending_any !event_sending_unrouted" in text


def test_stream_writer_routes_move_with_the_writer(tmp_path):
    before = route_table(deployment(tmp_path / "a", *with_typing_writers("generic2")), TABLE)
    after = route_table(deployment(tmp_path / "b", *with_typing_writers("generic1")), TABLE)
    assert routed(before)["typing"] == ["generic2"] and routed(after)["typing"] == ["generic1"]
    changes = route_changes(routes_in("\n".join(summary(before))), routes_in("\n".join(summary(after))))
    assert len(changes) == 1, changes
    assert changes[0].startswith("typing: generic2 127.0.0.1:8082 (round robin; 1 pattern ")
    assert " -> generic1 127.0.0.1:8081 (round robin; 1 pattern " in changes[0]


def skeleton(config: str) -> list[str]:
    """A HAProxy file without its servers, comments and the map's defaults: what a reload would change."""
    return [re.sub(r"map\(/dev/null,[^)]*\)", "map(/dev/null)", line) for line in config.splitlines()
            if not line.startswith(("#", "    server "))]


def test_haproxy_routes_through_a_map_so_a_writer_move_changes_no_rule_and_no_backend(tmp_path):
    """Issue 19: a category that gets a backend of its own (typing from main to a worker) is a map
    entry and a server at runtime: the file's rules and backends stay as they are."""
    by_main = route_table(deployment(tmp_path / "a", *with_typing_writers("main")), TABLE)
    by_worker = route_table(deployment(tmp_path / "b", *with_typing_writers("generic1")), TABLE)
    assert route_map(by_main)["typing"] == "main" and route_map(by_worker)["typing"] == "typing"
    assert route_map(by_main)["event_sending"] == "none" and route_map(by_main)["sync"] == "sync"
    texts = [haproxy(table, "127.0.0.1:8080", "127.0.0.1:9999", []) for table in (by_main, by_worker)]
    assert skeleton(texts[0]) == skeleton(texts[1])
    assert all(f"backend {c.name}\n" in text for c in CATEGORIES for text in texts)  # empty until one is routed
    assert "use_backend %[str(typing),map(/dev/null,typing)] if typing_any !typing_unrouted" in texts[1]


def test_writer_without_client_listener_is_an_error_naming_the_fix(tmp_path):
    shared, workers = modern_deployment()
    shared["stream_writers"]["typing"] = "persister1"  # only a replication listener
    table = route_table(deployment(tmp_path, shared, workers), TABLE)
    assert len(table.errors) == 1
    assert "typing writer persister1 has no http listener with the client resource; add one to" in table.errors[0].message
    assert table.errors[0].file.endswith("homeserver.yaml") and table.errors[0].line


def write_routes(tmp_path, text):
    path = tmp_path / "routes.yaml"
    path.write_text(text)
    return str(path)


def test_routes_file_assigns_categories_and_the_rest_goes_to_main(tmp_path):
    d = deployment(tmp_path)
    table = route_table(d, TABLE, write_routes(tmp_path, "event_sending: [generic1]\npagination: generic1\n"))
    got = routed(table)
    assert table.errors == [] and got["event_sending"] == got["pagination"] == ["generic1"]
    assert "sync" not in got and "client" not in got  # not listed: main
    text = haproxy(table, "127.0.0.1:8080", "127.0.0.1:9999", ["homeserver.yaml"])
    event_sending = text.split("backend event_sending\n")[1].split("\n\n")[0]
    assert "balance hash var(txn.synsup_room)" in event_sending
    assert "server main 127.0.0.1:8008 check inter 2s observe layer4 error-limit 1 on-error mark-down backup" \
           in event_sending


@pytest.mark.parametrize("text,line,fragment", [
    ("sync: [generic1]\nsynch: [generic1]\n", 2, "unknown category 'synch'; use one of: media, pagination, sync,"),
    ("sync:\n  - generic1\n  - generic9\n", 3, "sync: no process named 'generic9'; use one of: main, generic1, persister1,"),
    ("federation: [persister1]\n", 1, "federation: persister1 has no http listener with the federation resource;"),
    ("typing: [generic1]\n", 1, "typing is routed to the typing stream's writers: set stream_writers.typing instead"),
    ("sync: {a: b}\n", 1, "sync: expected a worker name or a list of worker names"),
])
def test_bad_routes_file_is_one_error_at_its_line(tmp_path, text, line, fragment):
    path = write_routes(tmp_path, text)
    table = route_table(deployment(tmp_path), TABLE, path)
    assert [(e.file, e.line) for e in table.errors] == [(path, line)]
    assert fragment in table.errors[0].message


def test_unreadable_routes_file_is_one_error_naming_it(tmp_path):
    table = route_table(deployment(tmp_path), TABLE, str(tmp_path / "missing.yaml"))
    assert [e.format() for e in table.errors] == [f"{tmp_path / 'missing.yaml'}: error: no such file; check the path"]


def test_get_only_patterns_route_only_get(tmp_path):
    patterns = RoutePatterns({"delayed_events": (("GET", "^/_matrix/client/unstable/x/delayed_events/([^/]+)$"),)}, "t")
    table = route_table(deployment(tmp_path), patterns, write_routes(tmp_path, "delayed_events: generic1\n"))
    assert "use_backend %[str(delayed_events),map(/dev/null,delayed_events)] if delayed_events_get METH_GET " \
           "!delayed_events_unrouted" in haproxy(table, "127.0.0.1:8080", "x", [])
    entry = '"~^GET:/_matrix/client/unstable/x/delayed_events/([^/]+)$" synapse_delayed_events;'
    assert entry in nginx(table, "127.0.0.1:8080", [])


def test_new_synapse_gives_its_own_exact_patterns(tmp_path):
    """Synapse 1.163 (the venv's): the servlet registry, with each group's own regex, not `.*`."""
    result = patterns_of(deployment(tmp_path))
    assert result.origin.startswith("Synapse 1.163") and "generate_workers_map" in result.origin
    assert ("*", "^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/([^/]*)/(join|invite|leave|ban|unban|kick)$") \
        in result.patterns["event_sending"]
    assert ("*", "^/_matrix/client/(r0|v3|unstable)/sync$") in result.patterns["sync"]
    assert ("*", "^/_matrix/client/(api/v1|r0|v3|unstable)/(pushrules/.*)$") in result.patterns["push_rules"]
    assert result.patterns["media"][0] == ("*", "^/_matrix/media/")  # not in Synapse's registry: the docs table


def test_old_synapse_falls_back_to_the_table_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", FAKE_SYNAPSE)  # a Synapse without generate_workers_map (before 1.81)
    result = patterns_of(deployment(tmp_path))
    assert result.origin.startswith(f"synsup's table for Synapse {TABLE_VALID_FOR} (units/route_table.py;")
    assert result.patterns["sync"] == TABLE_V166["sync"]


def test_stream_categories_take_every_method_on_the_writer():
    rows = [["GET", "^/x/(pushrules/.*)$", "Push rule requests"], ["GET", "^/y$", "Delayed event management requests"],
            ["*", "^/z$", None]]
    assert from_synapse(rows) == {"push_rules": (("*", "^/x/(pushrules/.*)$"),), "delayed_events": (("GET", "^/y$"),)}


def test_main_federation_listener_of_its_own_takes_federation_paths(tmp_path):
    shared, workers = modern_deployment()
    shared["listeners"] = [listener(8008, "client"), listener(8448, "federation"), listener(9093, "replication")]
    table = route_table(deployment(tmp_path, shared, workers), TABLE)
    assert table.main_federation is not None and table.main_federation.port == 8448
    assert "use_backend %[str(main_federation),map(/dev/null,main_federation)] if " \
           "{ path_beg /_matrix/federation/ /_matrix/key/ } !main_federation_unrouted" in \
        haproxy(table, "127.0.0.1:8080", "127.0.0.1:9999", [])


# the real proxies accept what synsup prints (skipped off CI when a binary is missing, as e2e does)

def example_table(tmp_path):
    shared, workers = with_typing_writers("generic2")
    workers["media1"] = worker("media1", listener(8085, "media"), enable_media_repo=True)
    d = deployment(tmp_path, shared, workers)
    routes = write_routes(tmp_path, "sync: [generic1, generic2]\nevent_sending: [generic2]\n"
                                    "federation_inbound: [generic1]\nsso: [generic1, generic2]\n")
    table = route_table(d, patterns_of(d), routes)
    assert table.errors == []
    return table


def test_haproxy_accepts_the_generated_file(tmp_path):
    haproxy_binary = binary("haproxy")
    path = tmp_path / "haproxy.cfg"
    path.write_text(haproxy(example_table(tmp_path), "127.0.0.1:18080", str(tmp_path / "admin.sock"), ["t"]))
    done = subprocess.run([haproxy_binary, "-c", "-f", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_nginx_accepts_the_generated_file(tmp_path):
    nginx_binary = binary("nginx")
    (tmp_path / "routes.conf").write_text(nginx(example_table(tmp_path), "127.0.0.1:18080", ["t"]))
    (tmp_path / "nginx.conf").write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
                                         f"http {{\n  access_log off;\n  include {tmp_path}/routes.conf;\n}}\n")
    done = subprocess.run([nginx_binary, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_routes_command_prints_haproxy_and_diff_says_what_changed(tmp_path):
    config, workers_dir = write_deployment(str(tmp_path), *with_typing_writers("generic2"))
    run = [sys.executable, "-m", "synsup", "routes", "-c", config, "-a", workers_dir]
    first = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("# Generated by `synsup routes --format haproxy`") and "frontend synapse" in first.stdout
    (tmp_path / "previous.cfg").write_text(first.stdout)
    same = subprocess.run(run + ["--diff", str(tmp_path / "previous.cfg")], capture_output=True, text=True, timeout=120)
    assert same.stdout == f"no route changed since {tmp_path / 'previous.cfg'}\n"
    shared, workers = with_typing_writers("generic1")
    with open(config, "w") as f:
        yaml.safe_dump(shared, f)
    moved = subprocess.run(run + ["--diff", str(tmp_path / "previous.cfg")], capture_output=True, text=True, timeout=120)
    assert moved.stdout.startswith("typing: generic2 127.0.0.1:8082") and "-> generic1 127.0.0.1:8081" in moved.stdout


def test_routes_command_bad_routes_file_is_one_line_exit_1(tmp_path):
    config, workers_dir = write_deployment(str(tmp_path), *modern_deployment())
    path = write_routes(tmp_path, "sync: [nobody]\n")
    done = subprocess.run([sys.executable, "-m", "synsup", "routes", "-c", config, "-a", workers_dir, "--routes", path],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": FAKE_SYNAPSE})
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [f"{path}:1: error: sync: no process named 'nobody'; use one of: main, "
                                        "generic1, persister1, persister2, pusher1, sender1"]


def test_check_with_a_routes_file_reports_its_mistakes_one_line_each(tmp_path):
    """Issue 19: `synsup check --routes FILE` says what `synsup routes` would refuse: a category
    given to a worker without the listener, a process that does not exist, a stream category
    assigned by hand (it goes to the stream's writer), each naming the routes file and line."""
    config, workers_dir = write_deployment(str(tmp_path), *modern_deployment())
    routes = tmp_path / "routes.yaml"
    routes.write_text("sync: [generic1]\nclient: [nosuch]\ntyping: [generic1]\nfederation_inbound: [generic1]\n")
    env = {**os.environ, "PYTHONPATH": FAKE_SYNAPSE}
    done = subprocess.run([sys.executable, "-m", "synsup", "check", "-c", config, "-a", workers_dir,
                           "--routes", str(routes)], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if ": error: " in line]
    assert any(f"{routes}:2" in e and "no process named 'nosuch'" in e for e in errors), errors
    assert any(f"{routes}:3" in e and "stream_writers.typing" in e for e in errors), errors
    routes.write_text("sync: [generic1]\n")
    done = subprocess.run([sys.executable, "-m", "synsup", "check", "-c", config, "-a", workers_dir,
                           "--routes", str(routes)], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr


def test_haproxy_retries_what_is_safe_on_another_server(tmp_path):
    text = haproxy(route_table(deployment(tmp_path), TABLE), "127.0.0.1:8080", "127.0.0.1:9999", [])
    assert "retry-on conn-failure empty-response response-timeout" in text
    assert "option redispatch 1" in text and "retries 3" in text  # every retry goes to another server
    assert "http-request disable-l7-retry if METH_POST" in text  # a POST is sent once


def test_haproxy_retries_a_put_cut_by_a_crash_on_another_server(tmp_path):
    """Regression (issue 19, found with real Synapse): a kill -9 failed the PUT .../send in flight
    (502, not retried: its body was still on its way when HAProxy sent the headers) and the sync
    in flight (503: its 3 retries all went to the dead server, which the hash still chose)."""
    text = haproxy(route_table(deployment(tmp_path), TABLE), "127.0.0.1:8080", "127.0.0.1:9999", [])
    assert "    option http-buffer-request" in text  # a request is whole before it is sent: retryable
    assert "    server generic1 127.0.0.1:8081 check inter 2s observe layer4 error-limit 1 on-error mark-down" in text


def test_haproxy_servers_are_named_after_their_units(tmp_path):
    text = haproxy(route_table(deployment(tmp_path), TABLE), "127.0.0.1:8080", "127.0.0.1:9999", [])
    assert "    server generic1 127.0.0.1:8081 check" in text and "    server main 127.0.0.1:8008 check" in text


def test_nginx_retries_idempotent_failures_and_falls_back_to_main_as_backup(tmp_path):
    text = nginx(route_table(deployment(tmp_path), TABLE), "127.0.0.1:8080", [])
    assert "proxy_next_upstream error timeout http_502 http_503 http_504;" in text
    assert "server 127.0.0.1:8008 backup;  # main" in text  # client reads: generic1, else main


def test_proxy_layout_gives_the_route_map_and_the_persisters(tmp_path):
    """What `start --proxy haproxy:` keeps HAProxy equal to: typing moving to generic1 is one map
    entry and one server more; the event persisters (a drain is short while one is down)."""
    def layout(directory, *writers):
        d = deployment(directory, *with_typing_writers(*writers))
        args = argparse.Namespace(routes=None, proxy_listen="127.0.0.1:8080")
        return proxy_layout(args, Loaded([], model=argparse.Namespace(deployment=d)), [])

    by_main, by_worker = layout(tmp_path / "a", "main"), layout(tmp_path / "b", "generic1")
    assert by_main.route_map == "/dev/null" and by_main.persisters == ["persister1", "persister2"]
    assert {k for k in by_main.routes if by_main.routes[k] != by_worker.routes[k]} == {"typing"}
    assert by_worker.routes["typing"] == "typing" and by_main.routes["typing"] == "main"
    added = {(s.backend, s.name) for s in by_worker.servers} - {(s.backend, s.name) for s in by_main.servers}
    assert added == {("typing", "generic1")}
