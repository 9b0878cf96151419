"""What a Synapse install says about its database schema, read with that install's python:
its version, SCHEMA_VERSION and SCHEMA_COMPAT_VERSION, and (given main's config) the schema
state the database records, read by Synapse's own prepare_database code in a transaction
that is rolled back. Also the command that migrates the schema with that code."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass

MARKER = "synsup-schema"
PROGRAMS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "synapse_programs")
TIME_LIMIT = 60.0



@dataclass(frozen=True)
class CodeSchema:
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
    code: CodeSchema | None = None
    database: DatabaseSchema | None = None  # None: empty database (or not read)
    error: str = ""  # the code could not be read
    database_error: str = ""


def read(python: str, main_args: tuple[str, ...] = ()) -> SchemaFacts:
    """The install's schema facts; with main_args, the database's schema state too."""
    try:
        done = subprocess.run([python, os.path.join(PROGRAMS, "schema_state.py"), *main_args],
                              capture_output=True, text=True,
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
    code = CodeSchema(str(reply["version"]), str(reply["file"]), int(reply["schema_version"]), int(reply["compat_version"]))
    db = reply.get("db")
    database = DatabaseSchema(int(db["current_version"]), db.get("compat_version"),
                              db.get("pending_deltas")) if db else None
    return SchemaFacts(code, database, database_error=str(reply.get("db_error") or ""))


def migration_command(python: str, main_args: tuple[str, ...]) -> tuple[str, ...]:
    return (python, os.path.join(PROGRAMS, "migrate_schema.py"), *main_args)
