"""A daemon as one node of a cluster (`start --cluster F --node N`, issue 18): its units' states
in the store (UnitStates), and its part in changes across nodes.

A reload (file watch, SIGHUP, `synsup reload`) applies nothing here: the files that check out
are published as this node's config digest (`config_changed`). Every daemon follows the store
(one watch on the cluster's prefix): the one that holds the leader key plans and advances
(`ChangeLeader`), and each carries out only its own node's steps of the phase in progress with
the reload plan executor, as an operation of its own queue, then acknowledges: after the
stopped processes are really gone (reaped, their ports closed) or the started ones ready. A
step that fails is not acknowledged: the plan waits, and the reason is in the store for
`status --cluster`. When the plan is done, every node takes the new config as its current one.
Nothing is started or stopped for a plan without the store: a node cut off from it keeps what
runs and starts nothing new."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import structlog

from ..cluster.change_leader import ChangeLeader, Look, member_digests
from ..cluster.cluster_plan import PREPARE, ClusterPlan, PlanPhase, PlanState, cluster_phases, restart_everywhere
from ..cluster.membership import config_digest
from ..cluster.published_states import UnitStates, ready_names
from ..cluster.store import StoreError
from ..engine.unit_state import UnitState
from ..plans import Action
from ..protocol import ReloadOutcome, ReloadResult
from ..source import Loaded
from .cluster_requests import UnitRequests
from .cluster_shutdown import ClusterStop
from .cluster_steps import FullView, Prepared, apply_steps
from .cluster_upgrade import ClusterUpgrade
from .plan_executor import PartialReload, finish_change, must_become_ready
from .records import runs_spec
from .self_fence import fence, unfence
from .unit_code import UnitCode

if TYPE_CHECKING:
    from ..engine.supervisor import Supervisor
    from .daemon import Daemon

RETRY = 1.0  # seconds before a lost watch is opened again
IGNORED = ("units/", "placed/")  # keys whose changes are UnitStates' business


class FilesMoved(Exception):
    """This node's files changed again after their digest was published: not planned from them yet."""


class ClusterNode:
    def __init__(self, states: UnitStates, base: FullView, load_full: Callable[[], FullView],
                 plan_full: Callable[[Loaded, Loaded], list[Action]]) -> None:
        self.states, self.base = states, base
        self.load_full, self.plan_full = load_full, plan_full
        self.membership = states.membership
        self.node, self.store, self.keys = self.membership.node, self.membership.store, self.states.keys
        self.leader = ChangeLeader(self.store, self.keys, self.node, self.membership.record.version)
        self.daemon: Daemon | None = None
        self._prepared: dict[str, Prepared] = {}  # plan id -> what this node prepared for it
        self._busy: set[tuple[str, int]] = set()  # (plan id, phase) submitted or done here
        self._committed: set[str] = set()  # plans done (or ended) that this node has taken as current
        self._refused: set[tuple[str, int]] = set()  # steps that failed here: tried again on new files
        self._unacked: dict[tuple[str, int], ClusterPlan] = {}  # steps done here whose ack the store did not take
        self.acted_on_later: set[str] = set()  # joined mid-plan: units its later steps act on (`start`)
        self.fenced: set[str] = set()  # self_fence: units stopped when the lease was lost, until it is back
        self.base_applied = True  # `base` is the applied config: this node may plan from it (lead)
        self.applied_nowhere = False  # no up node reports the applied files: one without them leads
        self._wake = asyncio.Event()
        self.requests = UnitRequests(self)  # restart/stop/start UNIT given on any node
        self.stopper = ClusterStop(self)  # `synsup stop` given on any node: every node, in order
        self.upgrader = ClusterUpgrade(self)  # `synsup upgrade`: refused without --node; --node N: on N
        self._phases: tuple[tuple[str, int], tuple[PlanPhase, ...]] | None = None  # (digest, base) -> phases
        self._others_seen: set[str] = set()  # other nodes' config digests this node re-read its files for
        self._tasks: list[asyncio.Task[None]] = []
        self.log = structlog.get_logger().bind(node=self.node)

    @property
    def digest(self) -> str:
        return self.membership.record.config_digest

    async def start(self, daemon: Daemon) -> None:
        """Join (an error if the store does not answer) and publish this node's units."""
        assert daemon.supervisor is not None
        self.daemon = daemon
        await self.states.start(daemon.supervisor)
        self.membership.on_join = self._on_join(self.membership.on_join)
        self.membership.on_lease_lost = self._lease_lost
        plan, _ = await self.leader.planner.read()
        if plan is not None and plan.state is PlanState.RUNNING:
            self.acted_on_later = await self._acted_on_later(plan) & set(daemon.supervisor.units)
            return
        if plan is not None:
            self._committed.add(plan.id)  # ended before this daemon joined
        self.acted_on_later = await self._held_until_applied(daemon.supervisor)

    async def _held_until_applied(self, sup: Supervisor) -> set[str]:
        """Back with files other than the applied ones while no plan runs: the node runs as the
        cluster's applied config says, not as its files do. Its Synapse processes that still run
        are adopted (never retired for the new files), the others (and the stand-ins of remote
        units no other node publishes ready: new in these files, or held by a node back with them
        too) are held: nothing with the new shard map starts beside another node's old-map
        processes, and no adopted process waits for a unit only the plan starts (the daemon's
        start would wait for it, and this node's plan steps queue behind that start). The leader's
        plan brings them along (its steps start them, the commit the rest); meanwhile this node
        does not lead (its files are no base to plan the change from)."""
        kv = await self.store.get(self.keys.applied)
        if kv is None or kv.value.decode() == self.digest:
            return set()
        self.base_applied = False
        self.membership.may_lead = lambda: self.base_applied or self.applied_nowhere
        await self.membership.resign()
        # not placed/<node>: a node back with the new files too publishes there the units it holds
        running = await self._ready_elsewhere()
        held = {n for n, u in sup.units.items() if UnitCode.runs_code(u.spec) or (u.spec.reported and n not in running)}
        self.log.warning("cluster.files_not_applied", files=self.digest[:12], applied=kv.value.decode()[:12],
                         held_until_the_plan=sorted(held))
        return held

    async def _acted_on_later(self, plan: ClusterPlan) -> set[str]:
        """This node's units that the plan in progress still stops or starts: a daemon that comes
        back mid-plan neither retires nor starts them (its files are already the new ones); the
        plan's steps do, in their order. With them, the units other nodes start in the phases to
        come: their stand-ins here are held too (the daemon's start waits for every unit it does
        not hold, and this node's steps queue behind it: a step due before that start would wait
        for ever); this node's next step, or the commit, starts them."""
        acked = await self.store.get(self.leader.planner.ack_key(plan, plan.phase, self.node)) is not None
        phases = plan.phases[plan.phase + (1 if acked else 0):]
        ours = {u for p in phases for a in p.steps.get(self.node, ()) for u in a.units}
        started = {u for p in plan.phases[plan.phase:] for n, actions in p.steps.items() if n != self.node
                   for a in actions if a.verb == "start" for u in a.units}
        return ours | started

    async def _ready_elsewhere(self) -> set[str]:
        """The units other nodes publish ready now (units/<node>): what this node's stand-ins follow."""
        return set().union(*(ready_names(kv) for kv in await self.store.get_prefix(self.keys.units)
                             if kv.key.removeprefix(self.keys.units) != self.node))

    async def _placed(self) -> dict[str, str]:
        """unit -> node as every node last published it (placed/<node>): what the applied config runs."""
        node_of: dict[str, str] = {}
        for kv in await self.store.get_prefix(self.keys.placed):
            node_of |= {str(u): kv.key.removeprefix(self.keys.placed) for u in json.loads(kv.value)}
        return node_of

    async def _lead_without_base(self) -> None:
        """Back with files other than the applied ones, this node leads only once no up node
        reports the applied files (every node came back with new ones: then one of them must lead,
        with the plan `_actions_without_base` makes; the leader key is created once)."""
        if self.base_applied:
            return
        kv = await self.store.get(self.keys.applied)
        nowhere = kv is not None and kv.value.decode() not in (await member_digests(self.store, self.keys)).values()
        if nowhere and not self.applied_nowhere:
            self.log.warning("cluster.applied_files_nowhere", applied=kv.value.decode()[:12] if kv else None,
                             action="this node may lead: every Synapse process restarts on the new files")
            self.applied_nowhere = True
            await self.membership.claim_leader()
        self.applied_nowhere = nowhere

    async def _actions_without_base(self, new: FullView) -> tuple[list[Action], dict[str, str]]:
        """The change from what the nodes published to `new`, for a leader without the applied
        files (restart_everywhere), and which node ran each unit."""
        placed = await self._placed()
        synapse = {s.name for s in new.loaded.specs if UnitCode.runs_code(s)}
        return restart_everywhere(placed, new.node_of, synapse), placed

    def _on_join(self, publish: Callable[[], None]) -> Callable[[], None]:
        """After a rejoin: units published again (UnitStates), and a look at the store (the watch
        may have missed what changed meanwhile)."""
        def joined() -> None:
            publish()
            self._wake.set()
        return joined

    def follow(self) -> None:
        """Follow the store's plans from now on (once the daemon's start is queued)."""
        self._tasks = [asyncio.create_task(self._follow_loop()), asyncio.create_task(self._wake_loop())]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.requests.answered()  # a stop asked through the store is answered before the lease goes
        await self.states.close()

    async def config_changed(self, new: Loaded) -> ReloadOutcome:
        """A reload's files checked out: publish their digest; the leader plans the change."""
        digest = config_digest(new.watch_paths)
        self._busy -= self._refused  # a step that failed here is tried again with these files
        self._refused.clear()
        if digest != self.digest:
            try:
                await self.membership.publish_digest(digest)
            except StoreError as e:  # said when the node joins again; nothing changes here meanwhile
                return ReloadOutcome(ReloadResult.REJECTED, errors=[f"the store is out of reach ({e}): config "
                                                                    f"{digest[:12]} is published when it is back; "
                                                                    "nothing changes here meanwhile"])
            self.log.info("cluster.config_published", digest=digest[:12])
        return ReloadOutcome(ReloadResult.APPLIED, [f"config {digest[:12]} published to cluster "
                                                    f"{self.membership.config.name}: the leader plans the change "
                                                    "across nodes once every node that takes part has these files"])

    # -- following the store
    async def _follow_loop(self) -> None:
        while True:
            try:
                async with self.store.watch(self.keys.prefix) as events:
                    await self._look()
                    async for event in events:
                        if not event.kv.key.removeprefix(self.keys.prefix).startswith(IGNORED):
                            await self._look()
            except StoreError as e:
                self.log.warning("cluster.follow_lost", error=str(e), kept="what runs; nothing new starts")
            except Exception:
                self.log.exception("cluster.look_failed")
            await asyncio.sleep(RETRY)

    async def _wake_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._look()
            except StoreError as e:
                self.log.warning("cluster.look_failed", error=str(e))

    async def _look(self) -> None:
        await self.requests.serve()
        await self._read_files_if_others_changed()
        await self._lead_without_base()
        try:
            look = await self.leader.look(self.digest, self._phases_for_files) if self.membership.may_lead() \
                else Look("not the leader")  # a key an earlier daemon of this node left: not for these files
        except FilesMoved:
            return
        if look.did not in ("not the leader", "no change"):
            self.log.info("cluster.leader_look", did=look.did)
        plan, _ = await self.leader.planner.read()
        if plan is not None:
            await self._take_part(plan)
        if self.fenced and self.membership.lease_held and (plan is None or plan.state is not PlanState.RUNNING):
            self.submit("unfence", self._unfence)

    async def _read_files_if_others_changed(self) -> None:
        """Another node reports files this one does not: read ours again (a `synsup reload` or a
        SIGHUP on one node is a reload on all, also without file watching). Once per new digest."""
        others = set((await member_digests(self.store, self.keys)).values()) - {self.digest}
        if others - self._others_seen and self.daemon is not None:
            self.log.info("cluster.other_files_seen", digests=sorted(d[:12] for d in others))
            self.daemon.reloads.request()
        self._others_seen |= others

    async def _phases_for_files(self) -> tuple[PlanPhase, ...]:
        """The change from the applied config to the files here, cut by node (planned once per
        digest and base: the leader looks again on every change in the store while it waits)."""
        key = (self.digest, id(self.base))
        if self._phases is None or self._phases[0] != key:
            new = await asyncio.to_thread(self.load_full)
            if config_digest(new.loaded.watch_paths) != self.digest:
                raise FilesMoved()  # changed again since published: planned once their reload publishes them
            actions, old_node_of = (self.plan_full(self.base.loaded, new.loaded), self.base.node_of) \
                if self.base_applied else await self._actions_without_base(new)
            needs = {s.name: s.dependencies for s in new.loaded.specs}
            self._phases = (key, cluster_phases(actions, old_node_of, new.node_of, needs))
        return self._phases[1]

    async def _take_part(self, plan: ClusterPlan) -> None:
        if plan.state is PlanState.DONE and plan.id not in self._committed:
            self._committed.add(plan.id)
            self.submit("cluster commit", lambda: self._commit(plan))
            return
        step = (plan.id, plan.phase)
        if plan.state is not PlanState.RUNNING or self.node not in plan.current.steps:
            return
        if step in self._unacked:
            return await self._acknowledge(plan)
        if step in self._busy:
            return
        self._busy.add(step)
        if await self.store.get(self.leader.planner.ack_key(plan, plan.phase, self.node)) is None:
            self.submit("cluster phase", lambda: self._run_phase(plan))

    def submit(self, name: str, work: Callable[[], Awaitable[None]]) -> None:
        """Queued behind (and never beside) the daemon's other operations; refused while it stops."""
        assert self.daemon is not None
        try:
            future = self.daemon.operations.submit(name, work)
        except Exception as e:
            self.log.info("cluster.step_refused", operation=name, reason=str(e) or type(e).__name__)
            return
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # logged by the operation

    # -- this node's steps
    async def _run_phase(self, plan: ClusterPlan) -> None:
        phase = plan.current
        self.log.info("cluster.phase", plan=plan.id, phase=phase.name, steps=[a.describe() for a in phase.steps[self.node]])
        prepared = self._prepared.get(plan.id) or await self._prepare(plan)
        if prepared is None:
            return
        if phase.name != PREPARE:
            try:
                await self._apply(prepared, list(phase.steps[self.node]))
            except (PartialReload, TimeoutError) as e:
                return await self._refuse(plan, str(e) or "a stopped unit's ports stayed open")
        await self._acknowledge(plan)
        if self.daemon is not None:
            self.daemon.settle()

    async def _acknowledge(self, plan: ClusterPlan) -> None:
        """The step is done here: say so. A store without quorum (or out of reach) cannot take it:
        kept, and written on the next look once the store answers, so the plan goes on."""
        try:
            await self.leader.planner.acknowledge(plan, self.node)
            await self.store.delete(self._note_key)
        except StoreError as e:
            self._unacked[(plan.id, plan.phase)] = plan
            self.log.warning("cluster.ack_deferred", plan=plan.id, phase=plan.current.name, error=str(e))
            return
        self._unacked.pop((plan.id, plan.phase), None)
        self.log.info("cluster.acknowledged", plan=plan.id, phase=plan.current.name)

    async def _prepare(self, plan: ClusterPlan) -> Prepared | None:
        """This node's files, checked and copied: the config its steps of the plan apply."""
        d = self.daemon
        assert d is not None and d.reloads.reloader is not None and d.supervisor is not None
        new = await asyncio.to_thread(d.reloads.reloader)
        digest = config_digest(new.watch_paths)
        if new.errors or digest != plan.config_digest:
            why = (f"its config files do not check out: {new.errors[0].format()}" if new.errors else
                   f"its config files ({digest[:12]}) are not the plan's ({plan.config_digest[:12]})")
            await self._refuse(plan, why)
            return None
        snapshot, specs = d.running.candidate(new, {n: u.spec for n, u in d.supervisor.units.items()})
        self._prepared[plan.id] = prepared = Prepared(new, snapshot, specs, must_become_ready(d.supervisor, specs))
        return prepared

    async def _apply(self, prepared: Prepared, steps: list[Action]) -> None:
        d = self.daemon
        assert d is not None and d.supervisor is not None
        steps = self._done_before(prepared, steps)
        await apply_steps(d.supervisor, d.running, prepared, steps, self.acted_on_later | self.fenced,
                          self.states.report_remote)

    def _done_before(self, prepared: Prepared, steps: list[Action]) -> list[Action]:
        """The steps without the (re)starts an earlier daemon of this node already made: a process
        it started with the plan's config before it died, adopted by this one and ready, is kept
        (restarting it would take it down for nothing)."""
        d = self.daemon
        assert d is not None and d.supervisor is not None
        new = {s.name: s for s in prepared.specs}
        done = {n for n, pid in d.adopted.items()  # only the plan that ran when this daemon came back
                if n in new and n in self.acted_on_later and (u := d.supervisor.units.get(n)) is not None and u.pid == pid
                and u.state is UnitState.READY and runs_spec(d.state, n, pid, new[n])}
        if not done:
            return steps
        self.log.info("cluster.step_done_before", units=sorted(done), reason="adopted, already on the plan's config")
        kept = [replace(a, units=tuple(u for u in a.units if u not in done)) if a.verb in ("start", "restart") else a
                for a in steps]
        return [a for a in kept if a.units]

    async def _commit(self, plan: ClusterPlan) -> None:
        """The plan is done: the new config is this node's current one (nodes without steps too)."""
        d = self.daemon
        assert d is not None and d.supervisor is not None
        prepared = self._prepared.pop(plan.id, None) or await self._prepare(plan)
        if prepared is None:
            return
        await finish_change(d.supervisor, prepared.specs)
        d.reloads.applied(prepared.new, prepared.snapshot)
        full = await asyncio.to_thread(self.load_full)
        if config_digest(full.loaded.watch_paths) == plan.config_digest:
            self.base, self.base_applied = full, True
        unfence(d.supervisor, self.acted_on_later)  # held since the start, and no step of the plan started them
        self.acted_on_later = set()
        self.log.info("cluster.change_done", plan=plan.id, generation=d.reloads.generation)
        d.settle()

    # -- self_fence
    def _lease_lost(self) -> None:
        if self.membership.config.self_fence:
            self.submit("self fence", self._fence)

    async def _fence(self) -> None:
        """The lease is lost (`self_fence: true`): the processes that hold the shard map stop and stay
        stopped until the node is back in the cluster."""
        if self.daemon is not None and self.daemon.supervisor is not None and not self.membership.lease_held:
            self.fenced |= await fence(self.daemon.supervisor)
            self.log.warning("cluster.fenced", units=sorted(self.fenced), reason="lease lost (self_fence)")

    async def _unfence(self) -> None:
        if self.daemon is not None and self.daemon.supervisor is not None and self.fenced:
            unfence(self.daemon.supervisor, self.fenced)
            self.log.info("cluster.unfenced", units=sorted(self.fenced))
            self.fenced = set()

    @property
    def _note_key(self) -> str:
        return f"{self.keys.prefix}notes/{self.node}"

    async def _refuse(self, plan: ClusterPlan, reason: str) -> None:
        """Not acknowledged: the plan waits for this node; why is in notes/<node> for status."""
        self.log.error("cluster.step_failed", plan=plan.id, phase=plan.current.name, reason=reason)
        self._refused.add((plan.id, plan.phase))
        note = {"plan": plan.id, "phase": plan.phase, "reason": reason, "at": time.time()}
        await self.store.put(self._note_key, json.dumps(note).encode())
