"""The human status table."""

from __future__ import annotations

from synsup.supervisor.render import status_table

LONG = ('psycopg2.OperationalError: connection to server at "127.0.0.1", port 5432 failed: '
        "Connection refused. Is the server running on that host and accepting TCP/IP connections?")


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
