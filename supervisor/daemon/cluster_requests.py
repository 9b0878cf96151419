"""Cluster-wide `synsup restart [UNIT...]`, `stop UNIT`, `start UNIT`, `pause`, `resume` (issue 18),
the daemon's side: given on any node, a request that names units other nodes run, or names none
(every node), is sent through the store (cluster/unit_requests.py) to each node concerned, one
after the other in cluster.yaml's order, and answered with their replies together; `--node N`
sends it to N only. Each node carries out the requests for it as it would the same request
given there (the same handler), then answers."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..cluster.unit_requests import HALT, UPGRADE, VERBS, WITHOUT_UNITS, answer, ask, pending, route
from ..errors import SynsupError
from ..protocol import Refusal, Reply, RequestError, parse_request
from .cluster_upgrade import FIELDS as UPGRADE_FIELDS
from .handlers import Requests

if TYPE_CHECKING:
    from .cluster_node import ClusterNode

OPTIONS = ("rolling", "force", "local")  # the fields a request carries to the node that serves it
ANSWERED_WAIT = 5.0  # seconds a stopping daemon gives its last answers before it leaves the store


class UnitRequests:
    def __init__(self, node: ClusterNode) -> None:
        self.node = node
        self._serving: set[str] = set()  # request keys taken here
        self._tasks: set[asyncio.Task[None]] = set()

    def targets(self, raw: dict[str, Any]) -> dict[str, list[str]] | None:
        """node -> the units named it runs ([]: all of its own); None: this node alone, handled here
        (a request for its units only, or not one of the verbs that act across nodes)."""
        d, verb, units = self.node.daemon, raw.get("cmd"), raw.get("units") or []
        if verb not in VERBS or d is None or d.supervisor is None or not isinstance(units, list):
            return None
        if not units and verb not in WITHOUT_UNITS:
            return None
        here = self.node.node
        local = {n for n, u in d.supervisor.units.items() if not u.spec.reported}
        node_of = {**self.node.base.node_of, **{n: here for n in local}}
        nodes = list(self.node.membership.config.nodes)
        only = raw.get("node") if isinstance(raw.get("node"), str) else None
        targets = route(units, node_of, nodes, here, only)
        return None if list(targets) == [here] else targets

    async def forwarded(self, raw: dict[str, Any]) -> Refusal | dict[str, Any] | None:
        """The reply to a request other nodes (or every node) carry out; None: handled here."""
        try:
            targets = self.targets(raw)
        except SynsupError as e:
            return Refusal(str(e))
        if targets is None:
            return None
        order = [n for n in self.node.membership.config.nodes if n in targets]
        options = {k: raw[k] for k in OPTIONS if raw.get(k)}
        replies = []
        for node in order:
            try:
                reply = await ask(self.node.store, self.node.keys, node, raw["cmd"], targets[node], options=options)
            except SynsupError as e:  # that node does not answer, or the store does not
                return Refusal(str(e))
            if not reply.get("ok", True):
                return Refusal(f"node {node}: {reply.get('error', 'refused')}")
            replies.append(reply)
        return together(replies, order)

    async def serve(self) -> None:
        """This node's pending requests, each carried out once (as given here), then answered."""
        for key, request in await pending(self.node.store, self.node.keys, self.node.node):
            if key not in self._serving:
                self._serving.add(key)
                task = asyncio.create_task(self._carry_out(key, request))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def answered(self) -> None:
        """The requests in hand answered (a stop asked through the store answers once the daemon
        has stopped: the store is still open for it)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=ANSWERED_WAIT)

    async def _carry_out(self, key: str, request: dict[str, Any]) -> None:
        d = self.node.daemon
        assert d is not None and d.supervisor is not None
        if request["verb"] == HALT:  # a step of a cluster stop: not a request a client sends
            stopped = await self.node.stopper.halt(list(request["units"]))
            await answer(self.node.store, key, {"ok": True, "stopped": stopped})
            return
        raw = {"cmd": request["verb"], **({"units": request["units"]} if request["units"] else {}),
               **{k: v for k, v in (request.get("options") or {}).items() if k in OPTIONS}}
        if request["verb"] == UPGRADE:  # --node N: this node's own upgrade, as given here with --node N
            raw = {"cmd": UPGRADE, "node": self.node.node,
                   **{k: v for k, v in (request.get("options") or {}).items() if k in UPGRADE_FIELDS}}
        replies: list[dict[str, Any]] = []

        async def keep(reply: Reply | dict[str, Any]) -> None:
            replies.append(reply if isinstance(reply, dict) else reply.as_json())
        try:
            parsed = parse_request(raw, list(d.supervisor.units))
            await Requests(d).routes[parsed.cmd](parsed, keep)
        except RequestError as e:
            replies.append(Refusal(str(e)).as_json())
        await answer(self.node.store, key, replies[-1] if replies else Refusal("no reply").as_json())


def together(replies: list[dict[str, Any]], nodes: list[str]) -> dict[str, Any]:
    """One reply for the asker: the first node's (its daemon's fields), with every node's units (each
    marked with its node) and warnings."""
    if len(replies) == 1:
        return replies[0]
    units = [{**u, "node": node} for node, r in zip(nodes, replies) for u in r.get("units", [])]
    warnings = [w for r in replies for w in r.get("warnings") or []]
    return {**replies[0], "units": units, **({"warnings": warnings} if warnings else {})}
