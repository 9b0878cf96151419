"""The cluster in memory with a fake clock (issue 18): three hosts' daemons as the store sees them,
their processes as a list of runs, and faults struck at the boundaries of a persister change.

What is real: the store's rules (tests/memory_store.py, leases ended by the fake clock), the
leader and its plan (ChangeLeader, Planner: propose, advance, abort), membership (join, leader
key, resign), a daemon's rules when it joins (ClusterNode._acted_on_later, _held_until_applied),
its acknowledgements (ClusterNode._acknowledge, _refuse) and status (read_cluster_status). What is
modelled: processes (a run has a host, an events map, a start and an exit time), the daemon's
operation queue (its start first: it ends once every unit it does not hold is up, as
`Daemon._initial_start` waits for them to settle; a process it adopted is up only once its
dependencies are up or held, as `Unit._life` waits for them before it supervises one), its steps
(the plan executor) and units/<node> (UnitStates: its own units, ready or not, under its lease).

The change: persister2 moves from b to c and persister3 is added on b (old events map p1,p2; new
p1,p2,p3). Main and Redis on a, the other workers on c. The invariant over the whole run: no
process with the new map runs while an events writer with the old map runs (`overlaps`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from memory_store import MemoryStore

from synsup.supervisor.cluster.cluster_plan import ClusterPlan, PlanPhase, PlanState, cluster_phases
from synsup.supervisor.cluster.cluster_status import read_cluster_status
from synsup.supervisor.cluster.membership import MemberRecord, Membership
from synsup.supervisor.cluster.published_states import UnitStates
from synsup.supervisor.cluster.store import StoreUnreachable
from synsup.supervisor.cluster_config import ClusterConfig, Node, StoreConfig
from synsup.supervisor.daemon.cluster_node import ClusterNode
from synsup.supervisor.daemon.cluster_steps import FullView
from synsup.supervisor.plans import Action
from synsup.supervisor.source import Loaded
from synsup.supervisor.spec import UnitSpec

TTL = 6  # seconds of a lease
TICK = 0.5  # seconds of fake time a round of the model takes
HOSTS = ("a", "b", "c")
CONFIG = ClusterConfig("cluster.yaml", "model", StoreConfig(("http://10.0.0.9:2379",), "/m/", TTL),
                       {n: Node(n, f"10.0.0.{i}") for i, n in enumerate(HOSTS, 1)}, {})
MAPS = {"old": "p1,p2", "new": "p1,p2,p3"}  # the events map each config's processes run with
PLACEMENT = {"old": {"redis": "a", "main": "a", "persister1": "b", "persister2": "b", "generic1": "c", "sender1": "c"}}
PLACEMENT["new"] = {**PLACEMENT["old"], "persister2": "c", "persister3": "b"}
WRITERS = {"old": ("persister1", "persister2"), "new": ("persister1", "persister2", "persister3")}
CHANGE = [  # what units/reload_plan.py gives for this change of stream_writers.events
    Action("stop", ("persister1", "persister2"), "stream_writers.events changed"),
    Action("restart", ("main",), "stream_writers.events changed"),
    Action("start", ("persister1", "persister2", "persister3"), "the new events writers"),
    Action("restart", ("generic1",), "stream_writers.events changed"),
    Action("restart", ("sender1",), "stream_writers.events changed"),
]


def dependencies(files: str, unit: str) -> tuple[str, ...]:
    if unit == "redis":
        return ()
    if unit == "main":
        return ("redis",)
    return ("main",) if unit in WRITERS[files] else ("main", *WRITERS[files])


def node_units(files: str, node: str) -> dict[str, UnitSpec]:
    """The units a daemon runs with these files: its own, and stand-ins for the remote ones they need."""
    placed = PLACEMENT[files]
    own = {u for u, n in placed.items() if n == node}
    remote = {d for u in own for d in dependencies(files, u)} - own
    specs = {u: UnitSpec(u, ("redis-server",) if u == "redis" else ("python3", "-m", "synapse"),
                         code_name="" if u == "redis" else "Synapse") for u in own}
    return {**specs, **{u: UnitSpec(u, None, reported=True) for u in remote}}


@dataclass
class Run:
    name: str
    host: str
    map: str
    start: float
    exit: float | None = None


@dataclass
class World:
    """Every process on every host, as runs; what a checker reads of the fake Synapse's logs."""

    clock: list[float]
    runs: list[Run] = field(default_factory=list)
    fails: set[str] = field(default_factory=set)  # units that never become ready

    def alive(self, name: str, host: str | None = None) -> Run | None:
        return next((r for r in self.runs if r.name == name and r.exit is None and host in (None, r.host)), None)

    def start(self, name: str, host: str, files: str) -> bool:
        if self.alive(name) is None:
            self.runs.append(Run(name, host, MAPS[files] if name != "redis" else "", self.clock[0]))
        return name not in self.fails

    def stop(self, name: str) -> None:
        run = self.alive(name)
        if run is not None:
            run.exit = self.clock[0]

    def overlaps(self) -> list[str]:
        """A new-map process that ran while an old-map events writer ran (any host)."""
        old = [r for r in self.runs if r.map == MAPS["old"] and r.name in WRITERS["old"]]
        new = [r for r in self.runs if r.map == MAPS["new"]]
        return [f"{n.name} ({n.host}, new map) from {n.start:g}s beside {o.name} ({o.host}, old map) until "
                f"{'now' if o.exit is None else f'{o.exit:g}s'}" for o in old for n in new
                if n.start < (o.exit if o.exit is not None else float("inf")) and o.start < (n.exit or float("inf"))]


class ModelStore(MemoryStore):
    """Leases end when the fake clock passes their TTL; without quorum nothing ends, and when it is
    back every lease has its TTL again (as etcd's new leader gives them)."""

    def __init__(self, clock: list[float]) -> None:
        super().__init__()
        self.clock, self.expiry, self.requests = clock, {}, 0
        self.expiry: dict[int, float]

    def _check(self) -> None:
        self.requests += 1
        super()._check()

    async def grant(self, ttl: int) -> Any:
        lease = await super().grant(ttl)
        self.expiry[lease.id] = self.clock[0] + ttl
        return lease

    async def keepalive(self, lease: int) -> int:
        ttl = await super().keepalive(lease)
        if ttl:
            self.expiry[lease] = self.clock[0] + ttl
        return ttl

    def tick(self) -> None:
        if not self.down:
            for lease in [lease for lease, at in self.expiry.items() if at <= self.clock[0]]:
                del self.expiry[lease]
                self.expire(lease)

    def quorum(self, back: bool) -> None:
        self.down = not back
        if back:
            self.expiry = {lease: self.clock[0] + TTL for lease in self.expiry}


class HostStore:
    """One host's way to the store: cut off, every call fails as if no endpoint answered."""

    def __init__(self, store: ModelStore) -> None:
        self.store, self.cut = store, False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.store, name)
        if not callable(attr) or name in ("watch",):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.cut:
                raise StoreUnreachable("cut off from the store (model)")
            return await attr(*args, **kwargs)
        return call


Work = Callable[[], Any]


class ModelDaemon:
    """One host's synsup: joins, keeps its lease, looks at the store each round as the real one does
    on every change, and runs one operation at a time (its start first)."""

    def __init__(self, host: Host) -> None:
        self.host, self.world = host, host.world
        self.units = node_units(host.files, host.name)
        record = MemberRecord(host.name, CONFIG.nodes[host.name].address, host.version, host.files, 0.0)
        self.membership = Membership(CONFIG, host.name, record, host.store)  # type: ignore[arg-type]
        view = FullView(Loaded([]), {})
        self.node = ClusterNode(UnitStates(self.membership), view, lambda: view, lambda old, new: [])
        self.base = host.files  # the files the daemon started with: what it plans from
        self.held: set[str] = set()
        self.supervised: set[str] = set()  # own units past their wait for dependencies (Unit._life)
        self.published: bytes | None = None  # units/<node> as last written
        self.queue: list[tuple[str, Callable[[], Any]]] = []
        self.busy: set[tuple[str, int]] = set()
        self.committed: set[str] = set()
        self.renewed = self.next_renewal = 0.0
        self.joined = False

    @property
    def name(self) -> str:
        return self.host.name

    # -- joining
    async def boot(self) -> None:
        """As Daemon.run: join first (a store that does not answer ends the start), then the units.
        A process an earlier daemon left whose unit these files do not run here is stopped first
        (`start` refuses to start beside it; `start --replace` stops it)."""
        for run in [r for r in self.world.runs if r.host == self.name and r.exit is None]:
            if run.name not in self.units or self.units[run.name].reported:
                self.world.stop(run.name)
        await self.membership._join()
        own = [u for u in self.units if self._own(u)]  # UnitStates: placed/<node>, kept when it is down
        await self.host.store.put(f"{CONFIG.store.prefix}placed/{self.name}", json.dumps(own).encode())
        self.joined, self.renewed, self.next_renewal = True, self.host.clock[0], self.host.clock[0] + TTL / 3
        await self._publish()
        plan, _ = await self.node.leader.planner.read()
        if plan is not None and plan.state is PlanState.RUNNING:
            later = await self.node._acted_on_later(plan) & set(self.units)
        else:
            if plan is not None:
                self.committed.add(plan.id)
            sup = SimpleNamespace(units={n: SimpleNamespace(spec=s) for n, s in self.units.items()})
            later = await self.node._held_until_applied(sup)  # type: ignore[arg-type]
        self.node.acted_on_later = later
        adopted = {u for u in later if self._own(u) and self.world.alive(u, self.name) is not None}
        self.held = later - adopted  # Daemon._initial_start: not running, started by the plan's step
        self.queue.append(("start", self._start))

    def _own(self, unit: str) -> bool:
        return not self.units[unit].reported

    def _stand_in(self, unit: str) -> bool:
        return self.units[unit].reported

    def ready(self, unit: str) -> bool:
        """Up as the daemon sees it: its process runs (its own), or its node runs it (a stand-in)."""
        run = self.world.alive(unit)
        return run is not None and unit not in self.world.fails

    async def _start(self) -> bool:
        """The daemon's start: what it does not hold, adopted or not, waits until its dependencies
        are up (or held), then starts (or is supervised as it runs); done once every unit of its own
        it does not hold is up (Supervisor.wait_settled; stand-ins are another node's business, but
        an own unit waiting for one is not settled)."""
        for unit in self.units:
            if self._own(unit) and unit not in self.held and unit not in self.supervised and all(
                    d in self.held or self.ready(d) for d in dependencies(self.host.files, unit)):
                self.supervised.add(unit)
                if self.world.alive(unit, self.name) is None:
                    self.world.start(unit, self.name, self.host.files)
        return all(u in self.held or (u in self.supervised and self.ready(u)) for u in self.units if self._own(u))

    async def _publish(self) -> None:
        """UnitStates.publish: units/<node>, this node's units ready or not, under its lease (written
        when it changed)."""
        records = [{"name": u, "node": self.name, "pid": None, "state": "ready" if u in self.supervised
                    and self.world.alive(u, self.name) is not None and u not in self.world.fails else "stopped",
                    **({"held": True} if u in self.held else {})} for u in self.units if self._own(u)]
        value = json.dumps({"node": self.name, "units": records}).encode()
        if value != self.published:
            await self.host.store.put(f"{CONFIG.store.prefix}units/{self.name}", value, self.membership.lease)
            self.published = value

    # -- each round
    async def round(self) -> None:
        """Renew the lease when due, then one look at the store (ClusterNode._look)."""
        await self._renew()
        if not self.membership.lease_held:
            return
        try:
            await self._publish()
            await self._look()
        except StoreUnreachable:
            pass

    async def _renew(self) -> None:
        now = self.host.clock[0]
        if now < self.next_renewal:
            return
        self.next_renewal = now + TTL / 3
        try:
            if await self.host.store.keepalive(self.membership.lease) > 0:
                self.renewed = now
                self.membership._lost = False
                await self.membership.claim_leader()
            else:
                self.membership._lease_lost()
                await self.membership._join()
                self.renewed = now
        except StoreUnreachable:
            if now - self.renewed >= TTL:
                self.membership._lease_lost()

    async def _look(self) -> None:
        await self.node._lead_without_base()
        if self.membership.may_lead():
            self.host.looks.append((await self.node.leader.look(self.node.digest, self._phases_for_files)).did)
        plan, _ = await self.node.leader.planner.read()
        if plan is not None:
            await self._take_part(plan)

    async def _phases_for_files(self) -> tuple[PlanPhase, ...]:
        """ClusterNode._phases_for_files: from the applied files (the base this daemon started
        with), or without them (every node came back with new files) from what the nodes published."""
        files = self.host.files
        if self.node.base_applied:
            actions, old_node_of = (CHANGE if (self.base, files) == ("old", "new") else []), PLACEMENT[self.base]
        else:
            specs = [s for h in HOSTS for s in node_units(files, h).values() if not s.reported]
            actions, old_node_of = await self.node._actions_without_base(FullView(Loaded(specs), PLACEMENT[files]))
        return cluster_phases(actions, old_node_of, PLACEMENT[files],
                              {u: dependencies(files, u) for u in PLACEMENT[files]})

    async def _take_part(self, plan: ClusterPlan) -> None:
        """ClusterNode._take_part."""
        if plan.state is PlanState.DONE and plan.id not in self.committed:
            self.committed.add(plan.id)
            self.queue.append(("commit", lambda: self._commit(plan)))
            return
        step = (plan.id, plan.phase)
        if plan.state is not PlanState.RUNNING or self.name not in plan.current.steps:
            return
        if step in self.node._unacked:
            return await self.node._acknowledge(plan)
        if step in self.busy:
            return
        self.busy.add(step)
        if await self.host.store.get(self.node.leader.planner.ack_key(plan, plan.phase, self.name)) is None:
            self.queue.append(("phase", lambda: self._run_phase(plan)))

    async def work(self) -> None:
        """The operations at the head of the queue, each done (removed), until one still waits (the
        start) or none is left: every pass removes one or returns, so the loop ends."""
        while self.queue:
            _, operation = self.queue[0]
            if await operation() is False:
                return
            self.queue.pop(0)

    async def _run_phase(self, plan: ClusterPlan) -> None:
        """This node's steps (cluster_steps.apply_steps), then the acknowledgement or the reason."""
        if self.host.files != plan.config_digest:
            return await self.node._refuse(plan, f"its config files ({self.host.files}) are not the plan's")
        for unit in [u for u in self.held if self._stand_in(u)]:
            self.held.discard(unit)  # the stand-ins the new config needs, first
        for action in plan.current.steps[self.name]:
            self.held -= set(action.units)
            for unit in action.units:
                if action.verb in ("stop", "restart"):
                    self.world.stop(unit)
                if action.verb in ("start", "restart") and not self.world.start(unit, self.name, self.host.files):
                    self.world.stop(unit)
                    return await self.node._refuse(plan, f"{unit} did not become ready (rolled back)")
                if action.verb in ("start", "restart"):
                    self.supervised.add(unit)  # apply_actions waited for it: ready
        await self.node._acknowledge(plan)

    async def _commit(self, plan: ClusterPlan) -> None:
        """The plan is done: the new config is current; what was held for it starts (finish_change)."""
        self.base, self.held = plan.config_digest, set()
        self.node.acted_on_later = set()
        await self._start()


@dataclass
class Host:
    name: str
    world: World
    store: HostStore
    clock: list[float]
    files: str = "old"
    version: str = "1.0"
    daemon: ModelDaemon | None = None
    looks: list[str] = field(default_factory=list)


FAULTS = ("kill a daemon", "stop one past its lease", "kill the leader", "cut a node off",
          "store loses quorum", "a new persister fails to get ready")


@dataclass
class Outcome:
    fault: str
    phase: str
    outcome: str  # "done", "blocked: REASON", or "stuck: ..." (a deadlock: waits with no reason)
    overlaps: list[str]
    seconds: float
    store_requests: int

    @property
    def invariant_held(self) -> bool:
        return not self.overlaps


class Model:
    """Three hosts, one store, one fake clock; `change()` gives every host the new files."""

    def __init__(self) -> None:
        self.clock = [0.0]
        self.store = ModelStore(self.clock)
        self.world = World(self.clock)
        self.hosts = {n: Host(n, self.world, HostStore(self.store), self.clock) for n in HOSTS}
        self.pending: list[tuple[float, Callable[[], Any]]] = []  # (when, what): recoveries

    async def boot(self, *names: str) -> None:
        for name in names or HOSTS:
            host = self.hosts[name]
            host.daemon = ModelDaemon(host)
            try:
                await host.daemon.boot()
            except StoreUnreachable:
                host.daemon = None
                self.later(TTL / 2, lambda h=name: self.boot(h))  # type: ignore[misc]

    def kill(self, name: str) -> None:
        """The daemon is gone (SIGKILL): its processes keep running, its lease runs out."""
        self.hosts[name].daemon = None

    def later(self, seconds: float, what: Callable[[], Any]) -> None:
        self.pending.append((self.clock[0] + seconds, what))

    async def round(self, strike: Callable[[ClusterPlan | None], Any] | None = None) -> None:
        self.clock[0] += TICK
        self.store.tick()
        for when, what in [p for p in self.pending if p[0] <= self.clock[0]]:
            self.pending.remove((when, what))
            done = what()
            if hasattr(done, "__await__"):
                await done
        daemons = [h.daemon for h in self.hosts.values() if h.daemon is not None]
        for daemon in daemons:
            await daemon.round()
        if strike is not None:
            await strike(await self.plan())
        for daemon in [h.daemon for h in self.hosts.values() if h.daemon is not None]:
            try:
                await daemon.work()
            except StoreUnreachable:
                pass

    async def run_until(self, done: Callable[[], Any], seconds: float,
                        strike: Callable[[ClusterPlan | None], Any] | None = None) -> bool:
        end = self.clock[0] + seconds
        while self.clock[0] < end:
            await self.round(strike)
            if await done() and not self.pending:
                return True
        return False

    async def status(self) -> dict[str, Any]:
        return await read_cluster_status(CONFIG, self.store)

    async def plan(self) -> ClusterPlan | None:
        kv = self.store.keys.get(f"{CONFIG.store.prefix}plan")
        return ClusterPlan.decode(kv.value) if kv is not None else None

    async def all_ready(self) -> bool:
        """Every unit of the files each host has runs with its map, no plan runs, every daemon up."""
        plan = await self.plan()
        if plan is not None and plan.state is PlanState.RUNNING:
            return False
        for host in self.hosts.values():
            if host.daemon is None or host.daemon.queue:
                return False
            for unit, spec in node_units(host.files, host.name).items():
                run = self.world.alive(unit)
                if not spec.reported and (run is None or run.map != (MAPS[host.files] if unit != "redis" else "")):
                    return False
        return True

    async def restart_everywhere(self, processes_too: bool) -> None:
        """Every daemon stopped (killed: its processes keep running; or `synsup stop`: they stop too),
        the new files put on every host, and every daemon started again at once."""
        for name, host in self.hosts.items():
            self.kill(name)
            host.files = "new"
        if processes_too:
            for run in [r for r in self.world.runs if r.exit is None]:
                self.world.stop(run.name)
        await self.boot()

    def proposals(self) -> list[str]:
        """Who proposed a plan, each time one did."""
        return [h.name for h in self.hosts.values() for did in h.looks if did.startswith("proposed plan")]

    async def change(self, hosts: Sequence[str] = HOSTS) -> None:
        """New files on these hosts, each published as a reload does (ClusterNode.config_changed)."""
        for name in hosts:
            host = self.hosts[name]
            host.files = "new"
            if host.daemon is not None:
                await host.daemon.membership.publish_digest("new")


def target(model: Model, plan: ClusterPlan) -> str:
    """The node a fault strikes at this phase: one that has steps in it, not the leader if another has."""
    leader = model.store.keys.get(CONFIG.store.prefix + "leader")
    others = [n for n in plan.current.nodes if leader is None or n != leader.value.decode()]
    return (others or plan.current.nodes or ["c"])[-1]


def leader_of(model: Model) -> str:
    kv = model.store.keys.get(CONFIG.store.prefix + "leader")
    return kv.value.decode() if kv is not None else "a"


async def strike(model: Model, fault: str, plan: ClusterPlan, node: str | None = None,
                 down_for: float | None = None) -> str:
    """Strike `fault` now (on `node`, else the one `target` picks), for `down_for` seconds (else the
    case's own); the node it struck (or "store"). Recoveries are scheduled on the clock."""
    node = node or (leader_of(model) if fault == "kill the leader" else target(model, plan))
    if fault in ("kill a daemon", "stop one past its lease", "kill the leader"):
        model.kill(node)
        model.later(down_for or (2 if fault == "kill a daemon" else TTL + 3), lambda: model.boot(node))
    elif fault == "cut a node off":
        model.hosts[node].store.cut = True
        model.later(down_for or 2 * TTL, lambda: setattr(model.hosts[node].store, "cut", False))
    elif fault == "store loses quorum":
        model.store.quorum(False)
        model.later(down_for or 2 * TTL, lambda: model.store.quorum(True))
        return "store"
    elif fault == "a new persister fails to get ready":
        model.world.fails.add("persister3")
        model.world.stop("persister3")  # running already (a later phase): it crashed and stays down
        return "b"
    return node


async def persister_change(fault: str | None = None, at: int = 0, seconds: float = 20 * TTL,
                           node: str | None = None, down_for: float | None = None) -> Outcome:
    """The persister change with `fault` struck when the plan enters phase `at`: how it ends."""
    model = Model()
    await model.boot()
    assert await model.run_until(model.all_ready, 10 * TTL), "the cluster did not start"
    began, requests = model.clock[0], model.store.requests
    await model.change()
    struck: list[str] = []

    async def at_phase(plan: ClusterPlan | None) -> None:
        if fault is not None and not struck and plan is not None and plan.state is PlanState.RUNNING \
                and plan.phase == at:
            struck.append(f"{plan.current.name.split(':')[0]} ({await strike(model, fault, plan, node, down_for)})")
    done = await model.run_until(model.all_ready, seconds, at_phase)
    return Outcome(fault or "none", struck[0] if struck else "-", "done" if done else await _why_not(model),
                   model.world.overlaps(), model.clock[0] - began, model.store.requests - requests)


async def _why_not(model: Model) -> str:
    plan = (await model.status())["plan"]
    if plan is not None and plan["reason"]:
        return f"blocked: {plan['reason']}"
    if plan is not None:
        return f"stuck: phase {plan['phase']} waits for {', '.join(plan['waiting_for'])} with no reason"
    done = await model.plan()
    down = sorted(u for h in model.hosts.values() for u, spec in node_units(h.files, h.name).items()
                  if not spec.reported and model.world.alive(u, h.name) is None)
    if done is not None and done.state is PlanState.DONE and all(h.daemon for h in model.hosts.values()):
        return f"done; degraded: {', '.join(down)} not ready (restarted at the same map by its node)"
    return f"stuck: no plan runs (last: {done.state.value if done else 'none'}), not every unit ready"


PHASES = [p.name.split(":")[0] for p in cluster_phases(CHANGE, PLACEMENT["old"], PLACEMENT["new"])]


def log(*args: Any) -> None:
    print(*args, file=sys.stderr)
