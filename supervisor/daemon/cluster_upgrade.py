"""`synsup upgrade` given on a node of a cluster (issue 18): never a silent upgrade of this node
alone that leaves the cluster on two versions with nobody told.

Without `--node`, every node that runs the application's code is upgraded, one after the other:
the node of its main process first (it migrates the database; the nodes after it find the schema
current), then the others in the order their processes start. First each node prepares (a dry
run there: `--python` exists at that path on it, its checks pass, the version it runs; all must
be up and run the same version), else nothing changes. Each node's upgrade is its single-host
upgrade (its restarts in units/upgrade_plan.py's order); one that fails halts the rest, and the
reply names the nodes on the new code and those on the old. The node it was given on drives it
(a dead one leaves each node whole: on the old code or the new, as status shows).

`--node N` is node N's upgrade alone. Each runs on its node through a request key, as restart's;
the node records the new code in its state dir, so its next start runs it."""

from __future__ import annotations

import asyncio
import json
import os
from typing import TYPE_CHECKING, Any

from ..cluster.cluster_stop import up_nodes
from ..cluster.store import StoreError
from ..cluster.unit_requests import UPGRADE, ask
from ..errors import SynsupError
from ..protocol import Refusal, Request, UpgradeProgress
from .unit_code import UnitCode

if TYPE_CHECKING:
    from .cluster_node import ClusterNode
    from .control_server import Send

UPGRADE_WAIT = 3600.0  # seconds the asking daemon waits for node N's upgrade (its member key watched meanwhile)
FIELDS = ("python", "dry_run", "allow_downtime")  # the request's fields carried to node N


class ClusterUpgrade:
    def __init__(self, node: ClusterNode) -> None:
        self.node = node

    def order(self) -> list[str]:
        """The nodes that run the application's code, in the order to upgrade them: by the first
        start step of such a unit (main's node first). A node that runs none (Redis alone) has
        nothing to upgrade."""
        nodes = list(self.node.membership.config.nodes)
        first: dict[str, int] = {}
        for spec in self.node.base.loaded.specs:
            node = self.node.base.node_of.get(spec.name)
            if node in nodes and UnitCode.runs_code(spec):
                first[node] = min(first.get(node, spec.step), spec.step)
        return sorted(first, key=lambda n: (first[n], nodes.index(n)))

    async def request(self, request: Request, send: Send) -> bool:
        """True: answered here (refused, or carried out by node N); False: this node's own upgrade."""
        here, nodes = self.node.node, list(self.node.membership.config.nodes)
        if request.allow_downtime and not request.dry_run and request.node in (None, *nodes):
            refusal = await self._old_code_elsewhere(request.node or (self.order() or [here])[0])
            if refusal:
                await send(Refusal(refusal))
                return True
        if request.node == here:
            if request.python and not (os.access(request.python, os.X_OK) and not os.path.isdir(request.python)):
                await send(Refusal(f"node {here}: --python {request.python}: no such interpreter on this node; "
                                   "install the new code there first (the same path on every node)"))
                return True
            return False
        if request.node is None:
            await self._every_node(request, send)
            return True
        if request.node not in nodes:
            await send(Refusal(f"--node {request.node}: not a node of the cluster (its nodes: {', '.join(nodes)})"))
            return True
        reply = await self._ask(request.node, self._options(request))
        await send(Refusal(reply) if isinstance(reply, str) else reply)
        return True

    async def _old_code_elsewhere(self, node: str) -> str:
        """A stopped upgrade (`--allow-downtime`) of `node`: its plan stops that node's processes only,
        then main migrates at its start; the old code's processes on the other nodes would run on over
        a schema they cannot handle. Refused (why, and the commands) while any runs; "" when none does."""
        code = {s.name for s in self.node.base.loaded.specs if UnitCode.runs_code(s)}
        try:
            published = await self.node.store.get_prefix(self.node.keys.units)
        except StoreError as e:
            return f"the store does not answer ({e}); nothing changed"
        running: dict[str, list[str]] = {}
        for kv in published:
            other = kv.key.removeprefix(self.node.keys.units)
            try:
                units = json.loads(kv.value)["units"]
            except (ValueError, KeyError, TypeError):
                continue
            names = sorted(u["name"] for u in units if isinstance(u, dict) and u.get("name") in code
                           and u.get("state") not in ("stopped", "failed"))
            if other != node and names:
                running[other] = names
        if not running:
            return ""
        names = [n for units in running.values() for n in units]
        main_node = (self.order() or [node])[0]
        where = "; ".join(f"{n}: " + ", ".join(u) for n, u in sorted(running.items()))
        return (f"a stopped upgrade (--allow-downtime) migrates the database while no process of the old code runs, "
                f"on any node; still running: {where}: "
                f"stop them first (`synsup stop {' '.join(names)}` on any node), then `synsup upgrade --node {main_node} "
                f"--allow-downtime`, then each other node (`synsup upgrade --node N`) and `synsup start` what you "
                "stopped; nothing changed")

    @staticmethod
    def _options(request: Request, **changed: bool) -> dict[str, Any]:
        return {k: v for k, v in {**request.as_json(), **changed}.items() if k in FIELDS and v}

    async def _ask(self, node: str, options: dict[str, Any]) -> dict[str, Any] | str:
        """Node `node`'s upgrade reply, or why there is none (one line naming the node)."""
        try:
            reply = await ask(self.node.store, self.node.keys, node, UPGRADE, [], timeout=UPGRADE_WAIT,
                              options=options, watch_member=True)
        except (SynsupError, StoreError) as e:
            return str(e)
        if reply.get("ok") is False:
            error = str(reply.get("error") or "refused")
            return error if error.startswith(f"node {node}:") else f"node {node}: {error}"
        return reply

    async def _every_node(self, request: Request, send: Send) -> None:
        """Without --node: every node, one after the other in `order` (main's node first: it
        migrates). First every node prepares (a dry run there: its --python exists, its checks
        pass, the Synapse version it runs): a node down, a refusal or two versions refuse the
        upgrade, nothing changed. A node whose upgrade fails halts it: the nodes after it keep the
        old code, and the reply names both."""
        order = self.order()
        try:
            down = [n for n in order if n not in await up_nodes(self.node.store, self.node.keys)]
        except StoreError as e:
            await send(Refusal(f"the store does not answer ({e}); nothing changed"))
            return
        if down:
            await send(Refusal(f"node {', '.join(down)} {'is' if len(down) == 1 else 'are'} down: every node takes part "
                               "in an upgrade; start it, or upgrade node by node (`synsup upgrade --node N`, "
                               f"main's node {order[0]} first); nothing changed"))
            return
        plans = await asyncio.gather(*(self._ask(n, self._options(request, dry_run=True)) for n in order))
        problems = [p if isinstance(p, str) else f"node {n}: {p['errors'][0]}" for n, p in zip(order, plans)
                    if isinstance(p, str) or p.get("errors")]
        versions = {n: str(p.get("from_version") or "?") for n, p in zip(order, plans) if not isinstance(p, str)}
        if not problems and len(set(versions.values())) > 1:
            problems = ["the nodes run different Synapse versions (" + ", ".join(f"{n}: {v}" for n, v in versions.items())
                        + "): upgrade node by node (`synsup upgrade --node N`)"]
        if problems:
            await send(Refusal("; ".join(problems) + "; nothing changed"))
            return
        ready = [p for p in plans if not isinstance(p, str)]
        if request.dry_run:
            await send(_together(order, ready))
            return
        done: list[str] = []
        last: dict[str, Any] = {}
        for node in order:
            await _progress(send, f"node {node}: upgrading")
            reply = await self._ask(node, self._options(request))
            if isinstance(reply, str) or reply.get("result") != "upgraded":
                why = reply if isinstance(reply, str) else _failure(node, reply)
                rest = order[len(done) + 1:]
                sides = ([f"{', '.join(done)} run{'s' if len(done) == 1 else ''} the new code"] if done else []) + \
                    ([f"{', '.join(rest)} the old"] if rest else [])
                again = f"`synsup upgrade --node {node}`" + "".join(f", then --node {n}" for n in rest)
                await send(Refusal(f"{why}; the upgrade halted at node {node}" + (f": {', '.join(sides)}" if sides else "")
                                   + f" (see `synsup status --cluster`); once {node} is fixed: {again}"))
                return
            done.append(node)
            last = reply
            await _progress(send, f"node {node}: upgraded ({', '.join(reply.get('actions') or []) or 'nothing to restart'})")
        await send(last | {"from_version": ready[0].get("from_version")})


def _failure(node: str, reply: dict[str, Any]) -> str:
    what = {"rejected": "refused", "failed": "failed before any restart", "partial": f"halted at {reply.get('unit')}"}
    return f"node {node}: upgrade {what.get(str(reply.get('result')), str(reply.get('result')))}: " + \
        str(reply.get("error") or "; ".join(reply.get("errors") or []) or "see its `synsup status`")


def _together(order: list[str], plans: list[dict[str, Any]]) -> dict[str, Any]:
    """Every node's dry run as one: each line with its node. The migration is main's node's (the
    first): the others find the database migrated when their turn comes."""
    first = plans[0]
    later = f"migration: by node {order[0]}, before this node's turn"
    return {**first, "summary": [f"node {n}: {later if n != order[0] and line.startswith('migration:') else line}"
                                 for n, p in zip(order, plans) for line in p.get("summary") or []],
            "commands": [f"{c} (on node {order[0]})" for c in first.get("commands") or []],
            "actions": [f"node {n}: {a}" for n, p in zip(order, plans) for a in p.get("actions") or []]}


async def _progress(send: Send, line: str) -> None:
    try:
        await send(UpgradeProgress(line))
    except ConnectionError:  # the admin's command went away: the upgrade goes on
        pass
