"""Stand-in for synapse.storage.prepare_database: the schema state of the fake database, and
the checks main and workers make at start (the same rules as Synapse's)."""

import json
import os
import types

from synapse.storage.schema import SCHEMA_COMPAT_VERSION, SCHEMA_VERSION


def _path():
    control = os.environ.get("SYNAPSE_FAKE_CONTROL", "")
    return os.path.join(control, "schema.json") if control else ""


def _get_or_create_schema_state(txn, engine):
    try:
        with open(_path()) as f:
            state = json.load(f)
    except (FileNotFoundError, ValueError):
        return None
    return types.SimpleNamespace(current_version=state["current_version"], compat_version=state["compat_version"])


def refusal(is_main):
    """Why this code refuses the database (None: it runs); main migrates it first."""
    if not _path():
        return None
    state = _get_or_create_schema_state(None, None)
    if state is None:
        if is_main:
            migrate()
        return None
    if state.compat_version is not None and state.compat_version > SCHEMA_VERSION:
        return "Cannot use this database as it is too new for the server to understand"
    if is_main:
        migrate()
    elif state.current_version < SCHEMA_VERSION:
        return f"Expected database schema version {SCHEMA_VERSION} but got {state.current_version}"
    return None


def migrate():
    state = _get_or_create_schema_state(None, None)
    current = max(SCHEMA_VERSION, state.current_version if state else 0)
    compat = max(SCHEMA_COMPAT_VERSION, (state.compat_version or 0) if state else 0)
    with open(_path() + ".tmp", "w") as f:
        json.dump({"current_version": current, "compat_version": compat}, f)
    os.replace(_path() + ".tmp", _path())
