"""The leader's side of a change across nodes (issue 18): one look at the store, made by the
daemon that holds the leader key whenever something under the cluster's prefix changes.

- a plan runs: try to advance it (one transaction: plan and leader key unchanged, every ack of
  the phase present; `Planner.advance`), nothing else;
- a plan is done: its config digest is the applied one (`applied`);
- no plan runs and the leader's own files differ from the applied ones: the change is planned
  (`phases_for`, the reload planner cut by node), but proposed only once every node that takes
  part reports the same config digest in its member record, and runs the leader's synsup
  version; until then the look says which nodes still have other files (or another synsup).
  A change whose plan was aborted is not proposed again: the next change of the files is.

Pure coordination over any Store: the phases come from the caller, nothing here runs processes."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from .cluster_plan import ClusterPlan, Planner, PlanPhase, PlanState
from .membership import Keys
from .store import KeyValue, Store

PhasesFor = Callable[[], Awaitable[tuple[PlanPhase, ...]]]


@dataclass(frozen=True)
class Look:
    """What one look as the leader did or waits for."""

    did: str
    waiting_for_files: tuple[str, ...] = ()


def behind(phases: tuple[PlanPhase, ...], digest: str, members: Mapping[str, str]) -> list[str]:
    """The nodes that take part in `phases` but do not report `digest` (other files, or down)."""
    involved = {n for p in phases for n in p.steps}
    return sorted(n for n in involved if members.get(n) != digest)


def old_files(members: Mapping[str, str], applied: str | None) -> list[str]:
    """status: while some node reports files other than the applied ones, the nodes that still
    report the applied ones (they have not received the new files yet)."""
    if applied is None or all(d == applied for d in members.values()):
        return []
    return sorted(n for n, d in members.items() if d == applied)


async def member_digests(store: Store, keys: Keys, field: str = "config_digest") -> dict[str, str]:
    """Each up node's `field` of its member record (its config digest, or its synsup version)."""
    digests = {}
    for kv in await store.get_prefix(keys.members):
        try:
            digests[kv.key.removeprefix(keys.members)] = str(json.loads(kv.value)[field])
        except (ValueError, KeyError, TypeError):
            continue
    return digests


class ChangeLeader:
    def __init__(self, store: Store, keys: Keys, node: str, version: str) -> None:
        self.store, self.keys, self.node, self.version = store, keys, node, version
        self.planner = Planner(store, keys)

    async def leading(self) -> KeyValue | None:
        """The leader key, if this node holds it."""
        kv = await self.store.get(self.keys.leader)
        return kv if kv is not None and kv.value.decode() == self.node else None

    async def look(self, digest: str, phases_for: PhasesFor) -> Look:
        """One look as the leader, `digest` being this node's config files."""
        leader = await self.leading()
        if leader is None:
            return Look("not the leader")
        plan, _ = await self.planner.read()
        if plan is not None and plan.state is PlanState.RUNNING:
            advance = await self.planner.advance(leader)
            if not advance.advanced or advance.plan is None:
                return Look(advance.reason)
            after = advance.plan
            return Look("plan done" if after.state is PlanState.DONE else f"advanced to phase {after.current.name}")
        applied = await self._applied(digest, plan)
        if digest == applied:
            return Look("no change")
        if plan is not None and plan.state is PlanState.ABORTED and plan.config_digest == digest:
            return Look("the change to these files was aborted: waiting for another change")
        return await self._propose(digest, await phases_for(), leader)

    async def _propose(self, digest: str, phases: tuple[PlanPhase, ...], leader: KeyValue) -> Look:
        waiting = behind(phases, digest, await member_digests(self.store, self.keys))
        if waiting:
            return Look(f"waiting for the new config files on {', '.join(waiting)}", tuple(waiting))
        versions = await member_digests(self.store, self.keys, "version")
        other = behind(phases, self.version, versions)
        if other:
            node = other[0]
            return Look(f"waiting for node {node}: it runs synsup {versions.get(node)}, the leader {self.version} "
                        "(upgrade synsup there)", tuple(other))
        plan = ClusterPlan(phases, digest)
        proposed = await self.planner.propose(plan, leader)
        return Look(f"proposed plan {plan.id}: {', '.join(p.name for p in phases)}" if proposed else "not proposed")

    async def _applied(self, digest: str, plan: ClusterPlan | None) -> str:
        """The applied digest: the last finished plan's; at the cluster's first start, the first
        leader's files."""
        kv = await self.store.get(self.keys.applied)
        applied = kv.value.decode() if kv is not None else None
        if plan is not None and plan.state is PlanState.DONE and plan.config_digest != applied:
            await self.store.put(self.keys.applied, plan.config_digest.encode())
            return plan.config_digest
        if applied is None:
            await self.store.create(self.keys.applied, digest.encode())
            return digest
        return applied
