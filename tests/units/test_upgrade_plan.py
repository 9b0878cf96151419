"""Planning an upgrade (units/upgrade.py): migration yes/no, rolling or stopped, the order."""

from __future__ import annotations

import pytest
from helpers import modern_deployment

from synsup.units.loader import load_deployment
from synsup.units.schema import CodeSchema, DatabaseSchema
from synsup.units.unit_specs import unit_specs
from synsup.units.upgrade_plan import needs_migration, plan_upgrade, rolling_blocker


@pytest.fixture
def specs(tmp_path):
    from helpers import write_deployment
    shared, workers = modern_deployment()
    config, workers_dir = write_deployment(str(tmp_path), shared, workers)
    return unit_specs(load_deployment([config], workers_dir, "/old/python").deployment, synapse_version="1.163.0")


NEW = CodeSchema("1.164.0", "/new/synapse/__init__.py", schema_version=95, compat_version=90)
DB = DatabaseSchema(current_version=94, compat_version=84)


@pytest.mark.parametrize("old, new, db, expected", [
    ("1.163.0", NEW, DB, True),  # schema behind
    ("1.163.0", NEW, DatabaseSchema(95, 90), True),  # new release: maybe new deltas within schema 95
    ("1.164.0", NEW, DatabaseSchema(95, 90), False),  # the same code again
    ("1.163.0", NEW, None, True),  # empty database
    # the delta files the new code would apply, when the database's applied deltas could be read
    ("1.163.0", NEW, DatabaseSchema(95, 90, pending_deltas=0), False),  # same schema, nothing to apply
    ("1.163.0", NEW, DatabaseSchema(95, 90, pending_deltas=2), True),  # new deltas within schema 95
    ("1.163.0", NEW, DatabaseSchema(94, 84, pending_deltas=0), True),  # schema behind all the same
])
def test_migration_needed(old, new, db, expected):
    assert needs_migration(old, new, db) is expected


@pytest.mark.parametrize("old_schema, compat, db_compat, rolling", [
    (94, 90, 84, True),  # the old code accepts the migrated database
    (94, 94, 84, True),
    (94, 95, 84, False),  # the migration raises compat above what the old code knows
    (94, 90, 95, False),  # the database already needs newer code than the old
])
def test_rolling_only_when_the_old_code_accepts_the_migrated_schema(old_schema, compat, db_compat, rolling):
    new = CodeSchema("1.164.0", "", 96, compat)
    assert (rolling_blocker(old_schema, new, DatabaseSchema(94, db_compat)) == "") is rolling


def test_rolling_plan_migrates_first_then_restarts_main_writers_workers(specs):
    plan = plan_upgrade("1.163.0", 94, NEW, DB, specs, "/new/python", allow_downtime=False)
    assert not plan.errors and plan.rollback
    argv = plan.commands[0].argv
    assert argv[0] == "/new/python" and argv[1].endswith("migrate_schema.py") and "-c" in argv[2:]
    units = [a.units for a in plan.actions]
    assert units[:2] == [("main",), ("persister1", "persister2")]
    assert sorted(u for (u,) in units[2:]) == ["generic1", "pusher1", "sender1"]
    assert all(a.verb == "restart" for a in plan.actions)


def test_incompatible_schema_is_refused_without_allow_downtime(specs):
    new = CodeSchema("1.164.0", "", 96, 95)
    plan = plan_upgrade("1.163.0", 94, new, DB, specs, "/new/python", allow_downtime=False)
    assert plan.errors and "--allow-downtime" in plan.errors[0] and not plan.actions


def test_stopped_plan_stops_workers_and_lets_main_migrate(specs):
    new = CodeSchema("1.164.0", "", 96, 95)
    plan = plan_upgrade("1.163.0", 94, new, DB, specs, "/new/python", allow_downtime=True)
    assert not plan.commands and not plan.rollback
    assert plan.actions[0].verb == "stop" and "main" not in plan.actions[0].units
    assert plan.actions[1].units == ("main",) and "migrates" in plan.actions[1].reason
    assert all(a.verb == "start" for a in plan.actions[2:])


def test_database_too_new_for_the_new_code_is_refused(specs):
    plan = plan_upgrade("1.163.0", 94, NEW, DatabaseSchema(97, 96), specs, "/new/python", allow_downtime=True)
    assert plan.errors and "install a newer Synapse" in plan.errors[0]


def test_same_code_again_is_a_plain_rolling_restart(specs):
    same = CodeSchema("1.163.0", "", 94, 84)
    plan = plan_upgrade("1.163.0", 94, same, DB, specs, "/old/python", allow_downtime=False)
    assert not plan.errors and not plan.commands and "migration: no" in plan.summary


def test_same_schema_release_says_migration_no(specs):
    """Issue 22: an upgrade between two releases with the same schema said "migration: yes"."""
    plan = plan_upgrade("1.163.0", 95, NEW, DatabaseSchema(95, 90, pending_deltas=0), specs, "/new/python",
                        allow_downtime=False)
    assert not plan.errors and not plan.commands and "migration: no" in plan.summary


@pytest.mark.parametrize("request_, error", [
    ({"cmd": "upgrade", "python": "bin/python"}, "absolute path"),
    ({"cmd": "upgrade", "python": 3}, "absolute path"),
    ({"cmd": "upgrade", "allow_downtime": "yes"}, "true or false"),
    ({"cmd": "upgrade", "units": ["main"]}, "unknown field"),
])
def test_upgrade_requests_are_validated(request_, error):
    from synsup.supervisor.protocol import RequestError, validate
    with pytest.raises(RequestError, match=error):
        validate(request_, ["main"])
    assert validate({"cmd": "upgrade", "python": "/new/bin/python", "dry_run": True}, ["main"]) == "upgrade"


def test_upgrade_refuses_a_stream_key_the_running_code_does_not_know(tmp_path):
    """Issue 22: the new config is checked with the old code too (its known stream keys)."""
    import argparse

    from helpers import write_deployment

    from synsup.supervisor.source import Loaded
    from synsup.units.reload_plan import snapshot_of
    from synsup.units.upgrade_prepare import prepare_upgrade
    shared, workers = modern_deployment()
    shared["stream_writers"]["quarantined_media_changes"] = "master"
    config, workers_dir = write_deployment(str(tmp_path), shared, workers)
    deployment = load_deployment([config], workers_dir, "/new/python").deployment
    new_specs = unit_specs(deployment, synapse_version="1.152.0")
    old_specs = unit_specs(deployment, synapse_version="1.151.0")
    plan = prepare_upgrade(lambda args: Loaded(new_specs, model=snapshot_of(deployment, new_specs)),
                           argparse.Namespace(python="/old/python"), Loaded(old_specs), "/new/python", False)
    [error] = plan.errors
    assert "stream_writers.quarantined_media_changes" in error and "Synapse 1.151.0" in error
    assert "add it after the upgrade" in error
