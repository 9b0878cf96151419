"""units/synapse_programs/schema_current.py: when may the workers start beside main? Only when
the database needs no migration for the code that will run (a fake schema directory and fake
database states here; the real one in tests/e2e/test_start_beside_real.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from synsup.units.unit_specs import SCHEMA_CURRENT

spec = importlib.util.spec_from_file_location("schema_current", SCHEMA_CURRENT)
assert spec is not None and spec.loader is not None
schema_current = importlib.util.module_from_spec(spec)
spec.loader.exec_module(schema_current)


@pytest.fixture
def schema_dir(tmp_path):
    root = tmp_path / "schema"
    root.mkdir()
    (root / "__init__.py").write_text("SCHEMA_VERSION = 94  # comment\n\nSCHEMA_COMPAT_VERSION = (\n"
                                      "    # a comment, as Synapse has it\n    84\n)\n")
    for part, names in {"common": ["01_a.sql"], "main": ["02_b.sql.postgres", "03_c.py", "04_d.sql.sqlite"],
                        "state": []}.items():
        (root / part / "delta" / "94").mkdir(parents=True)
        for name in names:
            (root / part / "delta" / "94" / name).write_text("")
    return str(root)


def test_the_code_schema_is_read_without_importing_synapse(schema_dir):
    assert schema_current.code_schema(schema_dir) == (94, 84)


def test_a_pending_delta_file_keeps_main_first(schema_dir):
    applied = ["94/01_a.sql", "94/02_b.sql.postgres"]  # 03_c.py not yet; the sqlite file is not ours
    pending = schema_current.pending_deltas(schema_dir, 94, 94, True, applied, ["main", "state"])
    assert pending == 1
    assert "1 delta file(s) of schema 94 not applied" in schema_current.verdict(94, (94, True, 84), pending)


def test_every_delta_applied_lets_workers_start_beside_main(schema_dir):
    applied = ["94/01_a.sql", "94/02_b.sql.postgres", "94/03_c.py"]
    assert schema_current.pending_deltas(schema_dir, 94, 94, True, applied, ["main", "state"]) == 0
    assert schema_current.verdict(94, (94, True, 84), 0) == ""
    # a schema made whole at 94 (not upgraded to it) has no deltas of 94 to apply
    assert schema_current.pending_deltas(schema_dir, 94, 94, False, [], ["main", "state"]) == 0


@pytest.mark.parametrize("db, says", [
    (None, "no schema yet"),  # an empty database: main creates the schema first
    ((93, True, 84), "at schema 93, this Synapse has 94: main migrates it first"),  # an upgrade
    ((95, True, 84), "at schema 95"),  # newer than the code: not ours to judge, main first
    ((94, True, 95), "needs schema 95 or later"),
])
def test_any_other_schema_state_keeps_main_first(db, says):
    assert says in schema_current.verdict(94, db, 0)


def run_check(job: dict, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCHEMA_CURRENT], input=json.dumps(job), capture_output=True, text=True,
                          timeout=30, env={**os.environ, **env})


def test_what_the_check_cannot_read_is_a_no_in_one_line(tmp_path):
    done = run_check({"database": {"name": "sqlite3", "args": {"database": "x.db"}}})
    assert (done.returncode, done.stdout.strip()) == (1, "not a psycopg2 database")
    # a Synapse without the schema package (the fake one): not known, one line, no traceback
    fake = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fake")
    done = run_check({"database": {"name": "psycopg2", "args": {"host": str(tmp_path)}}}, PYTHONPATH=fake)
    assert done.returncode == 1
    assert done.stdout.startswith("the schema state is not known (") and len(done.stdout.splitlines()) == 1
    assert "Traceback" not in done.stdout + done.stderr
