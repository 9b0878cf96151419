"""Run by synsup under a Synapse install's python, by path, at a start: does the database need
no migration for this Synapse, so that the workers need nothing from main at their start (they
reach it over replication and retry) and may start beside it? Exit 0 when the database's
schema is this code's SCHEMA_VERSION, its compat version is not above it and every delta file
of that version is applied; else exit 1 (main first, as always). Its one output line says why.

Quick on purpose (a start waits for it): it imports psycopg2, not Synapse (whose import costs
seconds of CPU). It reads the code's schema version from synapse/storage/schema/__init__.py
and its delta files from that directory, and the database's state with the queries of
Synapse's prepare_database (`_get_or_create_schema_state`), read-only. Anything it does not
understand is a "no". Reads {"database": <the `database` section>} on stdin. Called through
`UnitSpec.start_beside` (units/unit_specs.py)."""
# mypy: disable-error-code="import-not-found, import-untyped"

from __future__ import annotations

import ast
import importlib.util
import json
import os
import sys
from collections.abc import Iterable

DATA_STORES = ["main", "state"]  # a single `database:` holds both (synapse/config/database.py)


def code_schema(schema_dir: str) -> tuple[int, int]:
    """(SCHEMA_VERSION, SCHEMA_COMPAT_VERSION) as the code declares them, without importing it."""
    with open(os.path.join(schema_dir, "__init__.py")) as f:
        tree = ast.parse(f.read())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in ("SCHEMA_VERSION", "SCHEMA_COMPAT_VERSION"):
                found[node.targets[0].id] = int(ast.literal_eval(node.value))
    return found["SCHEMA_VERSION"], found["SCHEMA_COMPAT_VERSION"]


def pending_deltas(schema_dir: str, schema_version: int, current: int, upgraded: bool,
                   applied: Iterable[str], databases: list[str]) -> int:
    """The delta files this code would apply, as prepare_database walks them (as
    schema_state.py counts them)."""
    done = set(applied)
    pending = 0
    for v in range(current + (0 if upgraded else 1), schema_version + 1):
        for part in ["common", *databases]:
            try:
                names = os.listdir(os.path.join(schema_dir, part, "delta", str(v)))
            except OSError:
                continue
            for name in names:
                stem, ext = os.path.splitext(name)
                wanted = ext in (".py", ".sql") or (ext == ".postgres" and stem.endswith(".sql"))
                pending += wanted and f"{v}/{name}" not in done
    return pending


def verdict(schema_version: int, db: tuple[int, bool, int | None] | None, pending: int) -> str:
    """"" when the workers may start beside main; else why not."""
    if db is None:
        return "the database has no schema yet: main creates it first"
    current, _, compat = db
    if current != schema_version:
        return f"the database is at schema {current}, this Synapse has {schema_version}: main migrates it first"
    if compat is not None and compat > schema_version:
        return f"the database needs schema {compat} or later"
    if pending:
        return f"{pending} delta file(s) of schema {current} not applied yet: main applies them first"
    return ""


def database_state(database: dict) -> tuple[tuple[int, bool, int | None] | None, list[str]]:
    """((version, upgraded, compat version) or None for an empty database, applied deltas)."""
    import psycopg2
    args = {k: v for k, v in (database.get("args") or {}).items() if not str(k).startswith("cp_")}
    args.setdefault("connect_timeout", 5)  # a database that does not answer is a "no", soon
    conn = psycopg2.connect(**args)
    try:
        conn.set_session(readonly=True)
        cur = conn.cursor()
        cur.execute("SELECT to_regclass('schema_version')")
        if cur.fetchone()[0] is None:
            return None, []
        cur.execute("SELECT version, upgraded FROM schema_version")
        row = cur.fetchone()
        if row is None:
            return None, []
        current, upgraded = int(row[0]), bool(row[1])
        compat = None
        cur.execute("SELECT to_regclass('schema_compat_version')")
        if cur.fetchone()[0] is not None:
            cur.execute("SELECT compat_version FROM schema_compat_version")
            row = cur.fetchone()
            compat = int(row[0]) if row is not None else None
        cur.execute("SELECT file FROM applied_schema_deltas WHERE version >= %s", (current,))
        return (current, upgraded, compat), [r[0] for r in cur.fetchall()]
    finally:
        conn.rollback()
        conn.close()


def answer(job: dict) -> tuple[bool, str]:
    """(no migration needed, why)."""
    database = job.get("database")
    if not isinstance(database, dict) or database.get("name") != "psycopg2":
        return False, "not a psycopg2 database"
    spec = importlib.util.find_spec("synapse")  # where it is, without importing it
    if spec is None or not spec.origin:
        return False, "Synapse is not importable"
    schema_dir = os.path.join(os.path.dirname(spec.origin), "storage", "schema")
    schema_version, _ = code_schema(schema_dir)
    db, applied = database_state(database)
    pending = 0
    if db is not None and db[0] == schema_version:
        pending = pending_deltas(schema_dir, schema_version, db[0], db[1], applied, DATA_STORES)
    why = verdict(schema_version, db, pending)
    return not why, why or f"the database is at this Synapse's schema {schema_version}, every delta applied: no migration"


def main() -> None:
    try:
        ok, why = answer(json.load(sys.stdin))
    except Exception as e:  # anything not understood is a "no", in one line
        reason = (str(e).strip().splitlines() or [""])[0]
        print(f"the schema state is not known ({type(e).__name__}: {reason}): main first")
        sys.exit(1)
    print(why)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
