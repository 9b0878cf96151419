"""plan(old, new): what a config change requires, as ordered actions. Pure: no processes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from synsup.supervisor.plans import Action
from synsup.supervisor.spec import UnitSpec

from .model import Deployment, Process
from .roles import SHARDED_DUTY_KEYS, SINGLE_DUTIES, SINGLE_DUTY_KEYS, STREAMS, writers_of

# shared keys whose changes have their own rules; any other changed key restarts every Synapse process
SYNAPSE_KINDS = ("main", "worker")
ROLE_KEYS = frozenset({"stream_writers", "instance_map"}) | SHARDED_DUTY_KEYS | SINGLE_DUTY_KEYS


@dataclass(frozen=True, eq=False)
class DeploymentState:
    """What a reload compares: the model, its unit specs and the log config files' contents."""

    deployment: Deployment
    specs: dict[str, UnitSpec]
    log_digests: dict[str, str] = field(default_factory=dict)


class _Builder:
    def __init__(self, old: DeploymentState, new: DeploymentState) -> None:
        self.old, self.new = old, new
        self.actions: list[Action] = []
        self.touched: set[str] = set()  # stopped, started or restarted already
        self.down: set[str] = set()  # stopped by this plan and not started since
        self.rolling: dict[str, str] = {}  # unit -> reason, restarted one at a time at the end

    def stop(self, names, reason: str) -> None:
        names = [n for n in names if n in self.old.specs and n not in self.touched]
        if names:
            self.actions.append(Action("stop", tuple(names), reason))
            self.touched.update(names)
            self.down.update(names)

    def start(self, names, reason: str) -> None:
        names = [n for n in names if n in self.new.specs]
        if names:
            self.actions.append(Action("start", tuple(names), reason))
            self.touched.update(names)
            self.down.difference_update(names)

    def restart(self, name: str, reason: str) -> None:
        if name in self.new.specs and name not in self.touched:
            self.actions.append(Action("restart", (name,), reason))
            self.touched.add(name)

    def roll(self, names, reason: str) -> None:
        for name in names:
            self.rolling.setdefault(name, reason)

    def finish(self) -> list[Action]:
        order = sorted(self.new.specs.values(), key=lambda s: s.step)
        for spec in order:
            if spec.name in self.rolling and spec.name not in self.touched and spec.kind in SYNAPSE_KINDS:
                self.restart(spec.name, self.rolling[spec.name])
        # a unit still configured runs after every reload, in its new role
        self.start([s.name for s in order if s.name in self.down], "still configured: start it in its new role")
        return self.actions


def _names_with(d: Deployment, role: str) -> list[str]:
    return [p.name for p in d.processes if role in p.streams or role in p.duties]


def _synapse_units(snapshot: DeploymentState, exclude: frozenset[str] | set[str] = frozenset()) -> list[str]:
    return [n for n, s in snapshot.specs.items() if s.kind in SYNAPSE_KINDS and n not in exclude]


def _changed_keys(old: Deployment, new: Deployment) -> set[str]:
    a, b = old.shared.as_dict(), new.shared.as_dict()
    return {k for k in set(a) | set(b) if a.get(k) != b.get(k)}


def _unit_name(d: Deployment, instance: str) -> str | None:
    p = d.by_instance(instance)
    return p.name if p else None


def plan_external(b: _Builder) -> None:
    """A database that moved: watch the new address first (nothing is started or stopped)."""
    for name, spec in b.new.specs.items():
        before = b.old.specs.get(name)
        if spec.kind == "postgres" and before is not None and before.probes != spec.probes:
            b.restart(name, f"database moved: probe {spec.describe}")


def plan_events(b: _Builder) -> None:
    old, new = b.old.deployment, b.new.deployment
    if writers_of(old.shared, "events") == writers_of(new.shared, "events"):
        return
    old_set = [n for n in _names_with(old, "events") if n != "main"]
    new_set = [n for n in _names_with(new, "events") if n != "main"]
    b.stop(old_set, "event persisters changed: stop the old set together (event persistence pauses until "
                    "the new set is ready)")
    b.restart("main", "event persisters changed: main takes the new shard map")
    # every other process (a dropped persister included, now a plain worker) holds the old shard
    # map, and a persister of the new set refuses an event of a room that is not its own (a 500):
    # they stop before the new set starts and start with it, so no event goes by the old map
    others = [n for n in _synapse_units(b.new, set(new_set)) if n not in b.touched or n in b.down]
    b.stop(others, "event persisters changed: the others stop before the new set starts (no event goes by "
                   "the old shard map)")
    b.start([*new_set, *others], "event persisters changed: start the new set and the others together")


def plan_writers(b: _Builder) -> None:
    old, new = b.old.deployment, b.new.deployment
    for stream in STREAMS:
        if stream == "events" or writers_of(old.shared, stream) == writers_of(new.shared, stream):
            continue
        names = {n for d in (old, new) for w in writers_of(d.shared, stream) if (n := _unit_name(d, w))}
        together = sorted(names - {"main"})
        b.stop(together, f"{stream} writer moved: stop old and new writer together")
        if "main" in names:
            b.restart("main", f"{stream} writer moved")
        b.start(together, f"{stream} writer moved: start them with the new config")
        b.roll(_synapse_units(b.new), f"{stream} writer moved")


def plan_instance_map(b: _Builder) -> None:
    old_map = b.old.deployment.shared.get("instance_map") or {}
    new_map = b.new.deployment.shared.get("instance_map") or {}
    changed = {k for k in set(old_map) | set(new_map) if old_map.get(k) != new_map.get(k)}
    names = {n for d in (b.old.deployment, b.new.deployment) for k in changed if (n := _unit_name(d, str(k)))}
    names -= b.touched
    if not names:
        return
    together = sorted(names - {"main"})
    b.stop(together, "instance_map changed: stop the moved instances together")
    if "main" in names:
        b.restart("main", "instance_map changed")
    b.start(together, "instance_map changed: start them with the new config")
    b.roll(_synapse_units(b.new), "instance_map changed")


# why main holds each sharded duty's instance list, so restarts with the new set
MAIN_HOLDS = {
    "federation_sender": "main's federation send queue tracks each sender's position",
    "pusher": "main takes the new pusher set",
}


def plan_sharded(b: _Builder, duty: str, label: str) -> None:
    """Stop the old set together, restart main (it holds the list too), start the new set and
    the dropped members (plain workers now) together."""
    old_set, new_set = _names_with(b.old.deployment, duty), _names_with(b.new.deployment, duty)
    if old_set == new_set:
        return
    workers_old = [n for n in old_set if n != "main"]
    workers_new = [n for n in new_set if n != "main"]
    b.stop(workers_old, f"{label} changed: stop all of them together")
    b.restart("main", f"{label} changed: {MAIN_HOLDS[duty]}")
    former = [n for n in workers_old if n not in workers_new]
    b.start(workers_new + former, f"{label} changed: start the new set together")


def plan_single_duties(b: _Builder, keys: set[str]) -> None:
    if not keys & SINGLE_DUTY_KEYS:
        return
    for duty in SINGLE_DUTIES:
        holders = set(_names_with(b.old.deployment, duty)) ^ set(_names_with(b.new.deployment, duty))
        if holders:
            b.restart("main", f"{duty} moved")
            for name in sorted(holders - {"main"}):
                b.restart(name, f"{duty} moved")


def plan_workers(b: _Builder) -> None:
    old = {p.name: p for p in b.old.deployment.workers}
    for p in b.new.deployment.workers:
        before: Process | None = old.get(p.name)
        if before is not None and dict(before.own) != dict(p.own):
            b.roll([p.name], f"worker file {p.file} changed")
    for name, spec in b.new.specs.items():
        before_spec = b.old.specs.get(name)
        if before_spec is not None and (before_spec.argv, before_spec.env) != (spec.argv, spec.env):
            b.roll([name], "command line or environment changed")


def plan_log_configs(b: _Builder) -> None:
    changed = {f for f in set(b.old.log_digests) | set(b.new.log_digests)
               if b.old.log_digests.get(f) != b.new.log_digests.get(f)}
    names = [n for n, s in b.new.specs.items()
             if n not in b.touched and n not in b.rolling and n in b.old.specs and set(s.sighup_files) & changed]
    if names:
        b.actions.append(Action("signal", tuple(names), "log config changed: SIGHUP re-reads it"))


def plan(old: DeploymentState, new: DeploymentState) -> list[Action]:
    b = _Builder(old, new)
    removed = [n for n in old.specs if n not in new.specs]
    added = [n for n in new.specs if n not in old.specs]
    keys = _changed_keys(old.deployment, new.deployment)
    if "redis" in keys and "redis" in old.specs and "redis" in new.specs:
        b.restart("redis", "redis: section changed")
        b.roll(_synapse_units(new), "redis: section changed (every process connects to it)")
    plan_external(b)
    plan_events(b)
    b.stop(removed, "removed from the config")
    plan_writers(b)
    plan_instance_map(b)
    plan_sharded(b, "federation_sender", "federation senders")
    plan_sharded(b, "pusher", "pushers")
    plan_single_duties(b, keys)
    if keys - ROLE_KEYS - {"redis"}:
        b.roll(_synapse_units(new), f"shared config changed ({', '.join(sorted(keys - ROLE_KEYS - {'redis'}))})")
    plan_workers(b)
    b.start([n for n in added if n not in b.touched], "added to the config")
    plan_log_configs(b)
    return b.finish()



def _digest(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def snapshot_of(deployment: Deployment, specs: list[UnitSpec]) -> DeploymentState:
    files = {f for s in specs for f in s.sighup_files}
    return DeploymentState(deployment, {s.name: s for s in specs}, {f: d for f in files if (d := _digest(f))})
