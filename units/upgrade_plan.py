"""Planning a Synapse upgrade (pure): from the old and new code's schema facts and the
database's schema state, whether to migrate first, whether the old processes can keep
serving meanwhile (rolling) or must stop (--allow-downtime), and the restart order: main,
then each stream writer group together, then every other worker one at a time."""

from __future__ import annotations

from synsup.supervisor.plans import Action, Command, UpgradePlan
from synsup.supervisor.spec import UnitSpec

from .schema import CodeSchema, DatabaseSchema, migration_command
from .unit_specs import STEP_MAIN, STEP_WRITERS

SYNAPSE_KINDS = ("main", "worker")


def main_config_args(specs: list[UnitSpec]) -> tuple[str, ...]:
    """main's -c arguments, as its spec runs them (argv: python -m module -c FILE ...)."""
    main = next(s for s in specs if s.kind == "main")
    return tuple((main.argv or ())[3:])


def restart_order(specs: list[UnitSpec], verb: str, why: str) -> list[Action]:
    """main; each stream writer group together (a lone writer alone); the other workers one by one."""
    synapse = [s for s in specs if s.kind in SYNAPSE_KINDS]
    actions = [Action(verb, (s.name,), why) for s in synapse if s.step == STEP_MAIN]
    groups: dict[str, list[str]] = {}
    for s in synapse:
        if s.step == STEP_WRITERS:
            groups.setdefault(s.group or s.name, []).append(s.name)
    actions += [Action(verb, tuple(names), why + (" (a sharded group: together)" if len(names) > 1 else ""))
                for names in groups.values()]
    actions += [Action(verb, (s.name,), why) for s in synapse if s.step > STEP_WRITERS]
    return actions


def needs_migration(old_version: str, new: CodeSchema, db: DatabaseSchema | None) -> bool:
    """Main applies deltas at start; a new release may add deltas within the same schema version,
    so with the same schema: the delta files still to apply, when known, else whether the code changed."""
    if db is None or db.current_version < new.schema_version:
        return True
    if db.pending_deltas is not None:
        return db.pending_deltas > 0
    return new.version != old_version


def rolling_blocker(old_schema: int, new: CodeSchema, db: DatabaseSchema | None) -> str:
    """Why the old processes cannot keep serving on the migrated schema ("" when they can).
    As Synapse's prepare_database: a process refuses a database whose compat version is above
    its SCHEMA_VERSION, and a migration raises the compat version to SCHEMA_COMPAT_VERSION."""
    compat_after = max(new.compat_version, (db.compat_version or 0) if db else 0)
    if compat_after > old_schema:
        return (f"Synapse {new.version} raises the schema compatibility version to {compat_after}, above the "
                f"running code's schema version {old_schema}: the old processes would refuse the migrated database")
    return ""


def database_blocker(new: CodeSchema, db: DatabaseSchema | None) -> str:
    if db is not None and db.compat_version is not None and db.compat_version > new.schema_version:
        return (f"the database needs Synapse with schema version {db.compat_version} or later; Synapse "
                f"{new.version} has {new.schema_version}: install a newer Synapse")
    return ""


def plan_upgrade(old_version: str, old_schema: int, new: CodeSchema, db: DatabaseSchema | None,
                 specs: list[UnitSpec], python: str, allow_downtime: bool) -> UpgradePlan:
    plan = UpgradePlan(code_name="Synapse", from_version=old_version, to_version=new.version)
    plan.summary = [f"Synapse {old_version or '?'} (schema {old_schema}) -> {new.version} "
                    f"(schema {new.schema_version}, compat {new.compat_version}); database at "
                    + (f"schema {db.current_version}, compat {db.compat_version}" if db else "no schema yet")]
    blocker = database_blocker(new, db)
    if blocker:
        plan.errors = [blocker]
        return plan
    migrate = needs_migration(old_version, new, db)
    why_stopped = rolling_blocker(old_schema, new, db) if migrate else ""
    if why_stopped and not allow_downtime:
        plan.errors = [f"{why_stopped}; a stopped upgrade (workers stopped, main migrates at start) is "
                       "needed: run `synsup upgrade --allow-downtime`"]
        return plan
    if why_stopped:
        return _stopped(plan, specs, why_stopped)
    if migrate:
        plan.commands = [Command(f"migrate the database schema with Synapse {new.version} (old processes keep serving)",
                                 migration_command(python, main_config_args(specs)))]
    plan.summary.append(f"migration: {'yes, before the restarts, while the old processes serve' if migrate else 'no'}")
    plan.actions = restart_order(specs, "restart", f"Synapse {new.version}")
    return plan


def _stopped(plan: UpgradePlan, specs: list[UnitSpec], why: str) -> UpgradePlan:
    workers = tuple(s.name for s in specs if s.kind == "worker")
    plan.summary.append(f"migration: yes, by main at its start, with the workers stopped (downtime): {why}")
    plan.rollback = False
    plan.actions = ([Action("stop", workers, "stopped upgrade: the old workers cannot run on the new schema")]
                    if workers else [])
    main, *rest = restart_order(specs, "start", f"Synapse {plan.to_version}")
    plan.actions += [Action("restart", main.units, main.reason + ", migrates the schema at start"), *rest]
    return plan
