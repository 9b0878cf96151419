"""What a Synapse install says about its database schema, read with that install's python:
its version, SCHEMA_VERSION and SCHEMA_COMPAT_VERSION, and (given main's config) the schema
state the database records, read by Synapse's own prepare_database code in a transaction
that is rolled back. Also the command that migrates the schema with that code."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass

MARKER = "synsup-schema"
TIME_LIMIT = 60.0

# Runs under the install's python with main's config args (-c FILE ...) as argv; prints the
# marker line, then {"version", "file", "schema_version", "compat_version", "db" | "db_error"}.
SCRIPT = r'''
import json, os, sys
out = os.fdopen(os.dup(1), "w")
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
out.write("MARKER\n"); out.flush()
try:
    import synapse
    from synapse.storage.schema import SCHEMA_COMPAT_VERSION, SCHEMA_VERSION
except Exception as e:
    out.write(json.dumps({"import_error": "%s: %s" % (type(e).__name__, e)})); sys.exit(0)
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
                pending += wanted and "%d/%s" % (v, name) not in applied
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
        conn.rollback(); conn.close()
    return None if state is None else {"current_version": state.current_version,
                                       "compat_version": state.compat_version,
                                       "pending_deltas": pending_deltas(state, engine, db.databases)}

if sys.argv[1:]:
    try:
        reply["db"] = db_state(sys.argv[1:])
    except Exception as e:
        reply["db_error"] = "%s: %s" % (type(e).__name__, e)
out.write(json.dumps(reply)); out.flush()
'''.replace("MARKER", MARKER)

# Migrates the schema as main would at start (Synapse's update_synapse_database does the same
# from one config file; this loads main's config files exactly as main does).
MIGRATE = r'''
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
from synapse.config.homeserver import HomeServerConfig
from synapse._scripts.update_synapse_database import MockHomeserver
config = HomeServerConfig.load_config("Synapse", sys.argv[1:])
hs = MockHomeserver(config)
hs.setup()
hs.get_storage_controllers()
print("schema is up to date")
'''


@dataclass(frozen=True)
class Code:
    version: str
    file: str
    schema_version: int
    compat_version: int


@dataclass(frozen=True)
class DatabaseSchema:
    current_version: int
    compat_version: int | None
    pending_deltas: int | None = None  # delta files the new code would apply; None: not known


@dataclass(frozen=True)
class SchemaFacts:
    code: Code | None = None
    database: DatabaseSchema | None = None  # None: empty database (or not read)
    error: str = ""  # the code could not be read
    database_error: str = ""


def read(python: str, main_args: tuple[str, ...] = ()) -> SchemaFacts:
    """The install's schema facts; with main_args, the database's schema state too."""
    try:
        done = subprocess.run([python, "-c", SCRIPT, *main_args], capture_output=True, text=True,
                              timeout=TIME_LIMIT)
    except OSError as e:
        return SchemaFacts(error=f"cannot run {python}: {e.strerror or e}")
    except subprocess.TimeoutExpired:
        return SchemaFacts(error=f"{python} did not answer within {TIME_LIMIT:g}s")
    head, _, body = done.stdout.partition("\n")
    if head != MARKER:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return SchemaFacts(error=f"{python} is not a working Python ({last})")
    try:
        reply = json.loads(body)
    except ValueError:
        return SchemaFacts(error=f"{python} gave no answer about Synapse's schema")
    return _facts(python, reply)


def _facts(python: str, reply: dict) -> SchemaFacts:
    if "import_error" in reply:
        return SchemaFacts(error=f"Synapse is not importable with {python} ({reply['import_error']})")
    code = Code(str(reply["version"]), str(reply["file"]), int(reply["schema_version"]), int(reply["compat_version"]))
    db = reply.get("db")
    database = DatabaseSchema(int(db["current_version"]), db.get("compat_version"),
                              db.get("pending_deltas")) if db else None
    return SchemaFacts(code, database, database_error=str(reply.get("db_error") or ""))


def migration_command(python: str, main_args: tuple[str, ...]) -> tuple[str, ...]:
    return (python, "-c", MIGRATE, *main_args)
