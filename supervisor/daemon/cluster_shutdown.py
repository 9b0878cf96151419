"""`synsup stop` (no units) given on a node of a cluster (issue 18), the daemon's side. Without
`--local`, the node it is given on coordinates the stop of every node: refused while a plan is in
progress (the admin aborts it first: `synsup cluster abort`) and while another node's cluster stop
runs (the `stopping` key); then each step of the single-host stop order is carried out on every
node that runs units of it (a `halt` request: the node stops taking operations, as a stopping
daemon does, and stops those units at once, ahead of whatever its queue holds), the next step once
every node answered; then every other daemon ends (a local stop: its lease revoked, the node shows
down), this one last. A node that is down, or goes down meanwhile, is named and left out; the
others still stop. `--node N` stops node N only (its daemon and its processes). `--local`, and
SIGTERM, stop this node only, as on a single host (systemd's stop)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog

from ..cluster.cluster_plan import PlanState
from ..cluster.cluster_stop import stop_steps, take_stop, up_nodes
from ..cluster.membership import CLOSE_TIMEOUT
from ..cluster.store import StoreError
from ..cluster.unit_requests import HALT, NodeDown, ask
from ..errors import SynsupError
from ..protocol import Refusal, Request, StoppedReply, StopReply
from .operations import Phase

if TYPE_CHECKING:
    from .cluster_node import ClusterNode
    from .control_server import Send

GONE_WAIT = CLOSE_TIMEOUT + 2.0  # seconds an ended daemon's member key may take to vanish (its lease revoked)
GONE_POLL = 0.1


class ClusterStop:
    def __init__(self, node: ClusterNode) -> None:
        self.node = node
        self.log = structlog.get_logger().bind(node=node.node)

    # -- the node the stop was given on
    async def stop(self, request: Request, send: Send) -> None:
        """`synsup stop` [--node N] given here (not --local)."""
        here, nodes = self.node.node, list(self.node.membership.config.nodes)
        if request.node is not None and request.node not in nodes:
            await send(Refusal(f"--node {request.node}: not a node of the cluster (its nodes: {', '.join(nodes)})"))
            return
        if request.node == here:
            await self.stop_here(send)
            return
        try:
            refusal = await self._refusal()
            if refusal is None and request.node is not None:
                await self._stop_one(request.node, send)
                return
            if refusal is None and (holder := await take_stop(self.node.store, self.node.keys, here,
                                                              self.node.membership.lease)) is not None:
                refusal = (f"a cluster stop given on node {holder} is in progress: every node stops "
                           "(see `synsup status --cluster`)")
        except StoreError as e:
            refusal = f"the store does not answer ({e}): `synsup stop --local` stops this node only"
        if refusal is not None:
            await send(Refusal(refusal))
            return
        await self._stop_all(send)

    async def _refusal(self) -> str | None:
        plan, _ = await self.node.leader.planner.read()
        if plan is not None and plan.state is PlanState.RUNNING:
            return (f"plan {plan.id} is in progress (phase {plan.current.name}): a stop now would cut it mid-way; "
                    "`synsup cluster abort` ends it (what already ran keeps running), then `synsup stop`; "
                    "`synsup stop --local` stops this node only")
        return None

    async def _stop_all(self, send: Send) -> None:
        here = self.node.node
        config = self.node.membership.config
        try:
            up = await up_nodes(self.node.store, self.node.keys)
        except StoreError:  # just answered (the stopping key): each node is asked, and named if it fails
            up = set(config.nodes)
        steps = stop_steps(self.node.base.loaded.specs, self.node.base.node_of, config.nodes)
        placed = {n for step in steps for n in step.units}  # a node down that runs nothing leaves nothing running
        missing = {n: "its daemon is down (no lease in the store)" for n in config.nodes
                   if n not in up and n != here and n in placed}
        await _tell(send, StopReply([s.describe() for s in steps] + ["every daemon"]))
        self.log.info("cluster.stop", steps=[s.describe() for s in steps], down=sorted(missing))
        stopped: dict[str, list[str]] = {n: [] for n in config.nodes if n not in missing and (n in up or n == here)}
        for step in steps:
            await asyncio.gather(*(self._halt_on(n, units, stopped, missing)
                                   for n, units in step.units.items() if n not in missing))
        await asyncio.gather(*(self._end(n, missing) for n in config.nodes if n != here and n not in missing and n in up))
        for node in missing:
            stopped.pop(node, None)
        self.log.info("cluster.stopped", nodes=stopped, not_answering=missing)
        await self._end_here()
        await _tell(send, StoppedReply(stopped, missing))

    async def _halt_on(self, node: str, units: list[str], stopped: dict[str, list[str]],
                       missing: dict[str, str]) -> None:
        if node == self.node.node:
            stopped[node] += await self.halt(units)
            return
        try:
            reply = await ask(self.node.store, self.node.keys, node, HALT, units, watch_member=True)
        except (SynsupError, StoreError) as e:
            missing[node] = str(e)
            return
        if reply.get("ok") is False:
            missing[node] = str(reply.get("error") or "refused")
            return
        stopped[node] += list(reply.get("stopped") or [])

    async def _end(self, node: str, missing: dict[str, str]) -> None:
        """Node `node`'s daemon ends (a local stop there); done once its member key is gone."""
        try:
            reply = await ask(self.node.store, self.node.keys, node, "stop", [], options={"local": True},
                              watch_member=True)
        except NodeDown:
            return  # ended before its answer was read: what was asked
        except (SynsupError, StoreError) as e:
            missing[node] = str(e)
            return
        if reply.get("ok") is False:
            missing[node] = str(reply.get("error") or "refused")
            return
        await self._gone(node)

    async def _gone(self, node: str) -> None:
        try:
            async with asyncio.timeout(GONE_WAIT):
                while await self.node.store.get(self.node.keys.member(node)) is not None:
                    await asyncio.sleep(GONE_POLL)
        except TimeoutError:  # its lease ends by itself within the TTL
            self.log.warning("cluster.member_key_stays", node=node, expires_in=self.node.membership.config.store.ttl)

    async def _stop_one(self, node: str, send: Send) -> None:
        """--node N (not this one): N's daemon and processes stop (a local stop there)."""
        if node not in await up_nodes(self.node.store, self.node.keys):
            await send(Refusal(f"--node {node}: its daemon is down (no lease in the store): nothing to ask; "
                               f"`synsup stop` on {node} stops what its daemon left"))
            return
        await send(StopReply([f"every unit on node {node}, then its daemon"]))
        missing: dict[str, str] = {}
        names = [u for u, n in self.node.base.node_of.items() if n == node]
        await self._end(node, missing)
        await send(StoppedReply({} if missing else {node: names}, missing))

    async def _end_here(self) -> None:
        d = self.node.daemon
        assert d is not None
        d.request_stop()
        await d.stopped()

    async def stop_here(self, send: Send) -> None:
        """This node only: the single-host stop (its lease is revoked as the daemon ends)."""
        d = self.node.daemon
        assert d is not None
        await send(StopReply(d.stop_order()))
        await self._end_here()
        await send(StoppedReply())

    # -- every node: one step of a cluster stop
    async def halt(self, names: list[str]) -> list[str]:
        """Stop taking operations (the one in flight is cancelled, as by a stop), then stop these
        of this node's units now; their names."""
        d = self.node.daemon
        assert d is not None and d.supervisor is not None
        d.operations.preempt()
        if not d.lifecycle.stopping:
            d.lifecycle.move(Phase.STOPPING)
        sup = d.supervisor
        units = [sup.units[n] for n in names if n in sup.units and sup.units[n].spec.argv is not None
                 and not sup.units[n].spec.reported]
        await asyncio.gather(*(u.stop() for u in units))
        self.log.info("cluster.halted", units=[u.spec.name for u in units])
        return [u.spec.name for u in units]


async def _tell(send: Send, reply: StopReply | StoppedReply) -> None:
    """A reply to the admin's command; one that went away (Ctrl-C) does not cut the stop mid-way."""
    try:
        await send(reply)
    except ConnectionError:
        pass
