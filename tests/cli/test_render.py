"""The human status table."""

from __future__ import annotations

from synsup.supervisor.cli import render
from synsup.supervisor.cli.render import use_colour
from synsup.supervisor.protocol import StatusReply


def status_table(reply, now, colour=False):
    """The table of a reply line's object, read as the CLI reads it (protocol.StatusReply)."""
    return render.status_table(StatusReply.from_json(reply), now, colour)

REPLY = {"daemon": {"version": "x", "pid": 1, "state": "degraded", "config_generation": 1, "paused": True},
         "units": [{"name": "main", "state": "ready", "pid": 2, "restarts": 0, "uptime": 5},
                   {"name": "generic1", "state": "failed", "pid": None, "restarts": 5, "error": "boom",
                    "retry_at": 1060.0},
                   {"name": "pusher1", "state": "stopped", "pid": None, "restarts": 0, "held": True}]}

LONG = ('psycopg2.OperationalError: connection to server at "127.0.0.1", port 5432 failed: '
        "Connection refused. Is the server running on that host and accepting TCP/IP connections?")


def test_states_are_coloured_only_when_asked():
    plain = status_table(REPLY, 1000.0)
    assert "\x1b[" not in plain
    assert "failed (retry in 1m00s)" in plain and "stopped (by admin)" in plain and plain.startswith("PAUSED")
    coloured = status_table(REPLY, 1000.0, colour=True)
    assert "\x1b[32mready" in coloured and "\x1b[31mfailed" in coloured


class Tty:
    def isatty(self):
        return True


def test_no_color_turns_colours_off(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use_colour(Tty())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_colour(Tty())


def unit(name, error=None):
    return {"name": name, "state": "backoff" if error else "ready", "pid": None, "uptime": None,
            "restarts": 1, "health": None, "error": error}


def test_long_error_is_shown_in_full_below_the_table():
    reply = {"daemon": {"pid": 1, "state": "running"},
             "units": [unit("main", LONG), unit("generic1", "exit code 1"), unit("pusher1")]}
    lines = status_table(reply, 0.0).splitlines()
    assert lines[2].startswith("main") and lines[2].endswith("(below)")
    assert lines[3].endswith("exit code 1")
    assert lines[5:] == ["last errors:", f"  main: {LONG}"]



def test_a_degraded_unit_says_so_in_its_state_and_health_and_why_in_full_below():
    why = ("instance_map.persister1 (http://127.0.0.1:9101/_synapse/replication/...): answered 'HTTP/1.1 500 "
           "Internal Server Error'; persister1 refuses the deployment's worker_replication_secret")
    reply = {"daemon": {"state": "degraded"},
             "units": [{**unit("persister1"), "health": "ok", "degraded": why}, unit("main")]}
    table = status_table(reply, 0.0)
    row = next(line for line in table.splitlines() if line.startswith("persister1 "))
    assert "ready (degraded)" in row and "degraded (below)" in row and " ok " not in row
    assert table.endswith(f"degraded (ready, but its peers cannot reach it as configured):\n  persister1: {why}")
    assert "\x1b[33mready (degraded)" in status_table(reply, 0.0, colour=True)


def test_proxy_column_and_its_health_only_with_a_proxy():
    assert "PROXY" not in status_table(REPLY, 1000.0)
    proxy = {"kind": "haproxy", "target": "/run/haproxy/admin.sock", "ok": True, "error": None, "drains": True}
    units = [{**u, "proxy": p} for u, p in zip(REPLY["units"], ("ready", "maint", "absent"))]
    text = status_table({"daemon": {**REPLY["daemon"], "proxy": proxy}, "units": units}, 1000.0)
    header, main_row = text.splitlines()[2:4]
    assert header.split()[:3] == ["UNIT", "STATE", "PROXY"] and main_row.split()[:3] == ["main", "ready", "ready"]
    assert "proxy: haproxy at /run/haproxy/admin.sock ok" in text
    down = {**proxy, "ok": False, "error": "cannot reach /run/haproxy/admin.sock: Connection refused"}
    text = status_table({"daemon": {**REPLY["daemon"], "proxy": down}, "units": units}, 1000.0)
    assert "warning: proxy haproxy at /run/haproxy/admin.sock: cannot reach" in text
