"""Run by synsup under a Synapse install's python, by path: its version, SCHEMA_VERSION and
SCHEMA_COMPAT_VERSION, and, given main's config args (--config-path FILE ...) as argv, the
schema state the database records, read by Synapse's own prepare_database code in a
transaction that is rolled back. Writes the marker line, then {"version", "file",
"schema_version", "compat_version", "db" | "db_error"}. Called by units/schema.py."""
# mypy: disable-error-code="no-untyped-def, no-untyped-call, import-not-found, import-untyped"

import json
import os
import sys

MARKER = "synsup-schema"  # units/schema.py looks for it
out = os.fdopen(os.dup(1), "w")
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
out.write(MARKER + "\n")
out.flush()
try:
    import synapse
    from synapse.storage.schema import SCHEMA_COMPAT_VERSION, SCHEMA_VERSION
except Exception as e:
    out.write(json.dumps({"import_error": f"{type(e).__name__}: {e}"}))
    sys.exit(0)
reply = {"version": synapse.__version__, "file": synapse.__file__,
         "schema_version": SCHEMA_VERSION, "compat_version": SCHEMA_COMPAT_VERSION}

def pending_deltas(state, engine, databases):
    """The delta files this code would apply (as prepare_database walks them), None if unknown."""
    applied = getattr(state, "applied_deltas", None)
    if applied is None:
        return None
    import synapse.storage.schema as schema_package
    root = os.path.dirname(schema_package.__file__)
    own = ".postgres" if type(engine).__name__ == "PostgresEngine" else ".sqlite"
    start = state.current_version + (0 if getattr(state, "upgraded", False) else 1)
    pending = 0
    for v in range(start, SCHEMA_VERSION + 1):
        for part in ["common", *databases]:
            try:
                names = os.listdir(os.path.join(root, part, "delta", str(v)))
            except OSError:
                continue
            for name in names:
                stem, ext = os.path.splitext(name)
                wanted = ext in (".py", ".sql") or (ext == own and stem.endswith(".sql"))
                pending += wanted and f"{v}/{name}" not in applied
    return pending

def db_state(args):
    from synapse.config.homeserver import HomeServerConfig
    from synapse.storage.database import make_conn
    from synapse.storage.engines import create_engine
    from synapse.storage.prepare_database import _get_or_create_schema_state
    config = HomeServerConfig.load_config("Synapse", args)
    db = next(d for d in config.database.databases if "main" in d.databases)
    engine = create_engine(db.config)
    try:
        conn = make_conn(db_config=db, engine=engine, default_txn_name="synsup_schema",
                         server_name=config.server.server_name)
    except TypeError:  # before 1.135, make_conn took no server_name
        conn = make_conn(db, engine, "synsup_schema")
    try:
        cur = conn.cursor(txn_name="synsup_schema")
        if getattr(conn, "autocommit", False):
            cur.execute("BEGIN TRANSACTION")
        state = _get_or_create_schema_state(cur, engine)
    finally:
        conn.rollback()
        conn.close()
    return None if state is None else {"current_version": state.current_version,
                                       "compat_version": state.compat_version,
                                       "pending_deltas": pending_deltas(state, engine, db.databases)}

if sys.argv[1:]:
    try:
        reply["db"] = db_state(sys.argv[1:])
    except Exception as e:
        reply["db_error"] = f"{type(e).__name__}: {e}"
out.write(json.dumps(reply))
out.flush()
