"""exception_line: the exception a unit died of, out of its last output lines."""

from __future__ import annotations

import pytest

from synsup.supervisor.engine.died_of import exception_line

PSYCOPG = ('psycopg2.OperationalError: connection to server at "127.0.0.1", port 5432 failed: '
           'Connection refused')
PREPARE = ("synapse.storage.prepare_database.PrepareDatabaseException: "
           "Expected database schema version 92 but got 88")

CASES = [
    ("traceback then banner", ["Traceback (most recent call last):", '  File "x.py", line 1, in <module>',
                               PSYCOPG, "\tIs the server running on that host?", "synapse exited"], PSYCOPG),
    ("dotted exception", ["Traceback (most recent call last):", "  ...", PREPARE], PREPARE),
    ("chained: the last one", ["ValueError: inner", "", "During handling of the above exception, another "
                               "exception occurred:", "", "KeyError: 'outer'"], "KeyError: 'outer'"),
    ("bare assertion", ["  assert config.worker.worker_app in (", "AssertionError"], "AssertionError"),
    ("indented", ["    twisted.internet.error.CannotListenError: Couldn't listen on 127.0.0.1:8008"],
     "twisted.internet.error.CannotListenError: Couldn't listen on 127.0.0.1:8008"),
    ("log lines only", ["2026-01-01 12:00:00 - synapse.app - INFO - Setting up server",
                        "2026-01-01 12:00:01 - synapse - ERROR - Error: something"], None),
    ("prose", ["Error in configuration: please set report_stats", "Errors: 3"], None),
    ("empty", [], None),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_exception_line(case):
    _, lines, expected = case
    assert exception_line(lines) == expected
