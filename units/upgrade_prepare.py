"""`synsup upgrade` for Synapse: check every config with the new code, read the schema facts
of the old and new code and of the database, and plan (units.upgrade)."""

from __future__ import annotations

import argparse
import copy
import re
from collections.abc import Callable

from synsup.supervisor.plans import UpgradePlan
from synsup.supervisor.source import Loaded
from synsup.supervisor.spec import UnitSpec

from . import schema
from .synapse_version import unknown_streams
from .upgrade_plan import main_config_args, plan_upgrade


def _running(current: Loaded) -> tuple[str, str]:
    """(python, version) that main runs now; on a node of a cluster where main runs elsewhere (a
    stand-in here), what this node's first Synapse process runs."""
    runs = sorted((s for s in current.specs if s.argv and s.kind in ("main", "worker")),
                  key=lambda s: (s.kind != "main", s.step))
    if not runs:
        return "", ""
    return (runs[0].argv or ("",))[0], runs[0].version


def prepare_upgrade(load: Callable[[argparse.Namespace], Loaded], args: argparse.Namespace, current: Loaded,
                    python: str | None, allow_downtime: bool) -> UpgradePlan:
    new_args = copy.copy(args)
    new_args.python = python or args.python
    old_python, old_version = _running(current)
    loaded = load(new_args)  # every rule and Synapse's own loader, with the new code
    if loaded.errors:
        return UpgradePlan(from_version=old_version, errors=[f.format() for f in loaded.errors])
    if not any(s.kind == "main" for s in loaded.specs):
        return UpgradePlan(from_version=old_version, errors=["no main process to upgrade"])
    too_new = streams_the_old_code_refuses(loaded, old_version)
    if too_new:
        return UpgradePlan(from_version=old_version, errors=too_new)
    facts = schema.read(new_args.python, main_config_args(loaded.specs))
    error = facts.error or (f"cannot read the database's schema state: {facts.database_error}"
                            if facts.database_error else "")
    if error or facts.code is None:
        return UpgradePlan(from_version=old_version, errors=[error or "no answer from the new Synapse"])
    old_schema = _old_schema(old_python, new_args.python, facts)
    plan = plan_upgrade(old_version, old_schema, facts.code, facts.database, loaded.specs, new_args.python,
                        allow_downtime)
    plan.loaded, plan.reloader = loaded, (lambda: load(new_args))
    return plan


def streams_the_old_code_refuses(loaded: Loaded, old_version: str) -> list[str]:
    """The new config checked with the old code's stream keys: a process still on it (mid-upgrade,
    or after a rollback) would refuse a stream key it does not know."""
    if not old_version or loaded.model is None:
        return []
    return [f"{at.file}:{at.line}: stream_writers.{stream}: the running Synapse {old_version} does not know this "
            f"stream (added in {since}), so processes still on it would refuse the config during the upgrade "
            "or after a rollback; upgrade without it, and add it after the upgrade"
            for at, stream, since in unknown_streams(loaded.model.deployment, old_version)]


def start_refusal(python: str, loaded: Loaded, installed_version: str) -> str:
    """Why a start on `python` would run older code than what ran, or code older than the
    database's schema allows ("" when neither)."""
    version = loaded.info.get("synapse_version") or ""
    if version and installed_version and _numbers(version) < _numbers(installed_version):
        return f"that is older than Synapse {installed_version}, which ran"
    return _schema_refusal(python, [s for s in loaded.specs if s.kind == "main"], version)


def _schema_refusal(python: str, main: list[UnitSpec], version: str) -> str:
    facts = schema.read(python, main_config_args(main)) if main else None
    if facts is None or facts.code is None or facts.database is None:
        return ""
    needed = facts.database.compat_version or 0
    if needed > facts.code.schema_version:
        return f"the database needs schema version {needed} or later, Synapse {version} has {facts.code.schema_version}"
    return ""


def _numbers(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", version)[:3])


def _old_schema(old_python: str, new_python: str, facts: schema.SchemaFacts) -> int:
    """The running code's SCHEMA_VERSION: asked of its python when that is another install; after an
    in-place upgrade the old code is gone, and the schema its main prepared is the database's."""
    if old_python and old_python != new_python:
        old = schema.read(old_python)
        if old.code is not None:
            return old.code.schema_version
    if facts.database is not None:
        return facts.database.current_version
    assert facts.code is not None
    return facts.code.schema_version
