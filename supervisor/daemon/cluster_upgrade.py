"""`synsup upgrade` given on a node of a cluster (issue 18): never a silent upgrade of this node
alone that leaves the cluster on two versions with nobody told. Without `--node` it is refused
with the order to run: `synsup upgrade --node N` node by node, the node of the application's main
process first (it migrates the database; the nodes after it find the schema current), then the
others in the order their processes start. `--node N` is carried out on node N as the single-host
upgrade (a request key, as restart's; N records the new code in its state dir, so its next start
runs it), `--python` checked there, and its outcome printed here."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..cluster.store import StoreError
from ..cluster.unit_requests import UPGRADE, ask
from ..errors import SynsupError
from ..protocol import Refusal, Request
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
        """The nodes in the order to upgrade them: by the first start step of a unit each runs that
        runs the application's code (main's node first), nodes without one last."""
        nodes = list(self.node.membership.config.nodes)
        first: dict[str, int] = {}
        for spec in self.node.base.loaded.specs:
            node = self.node.base.node_of.get(spec.name)
            if node in nodes and UnitCode.runs_code(spec):
                first[node] = min(first.get(node, spec.step), spec.step)
        return sorted(nodes, key=lambda n: (first.get(n, 1 << 30), nodes.index(n)))

    async def request(self, request: Request, send: Send) -> bool:
        """True: answered here (refused, or carried out by node N); False: this node's own upgrade."""
        here, nodes = self.node.node, list(self.node.membership.config.nodes)
        if request.node == here:
            if request.python and not (os.access(request.python, os.X_OK) and not os.path.isdir(request.python)):
                await send(Refusal(f"node {here}: --python {request.python}: no such interpreter on this node; "
                                   "install the new code there first (the same path on every node)"))
                return True
            return False
        if request.node is None:
            order = self.order()
            await send(Refusal(
                f"--cluster: `synsup upgrade` upgrades one node at a time: run `synsup upgrade --node {order[0]}`"
                + "".join(f", then `--node {n}`" for n in order[1:])
                + f" (node {order[0]} runs main and migrates the database first), the same --python on every node"))
            return True
        if request.node not in nodes:
            await send(Refusal(f"--node {request.node}: not a node of the cluster (its nodes: {', '.join(nodes)})"))
            return True
        options = {k: v for k, v in request.as_json().items() if k in FIELDS}
        try:
            reply = await ask(self.node.store, self.node.keys, request.node, UPGRADE, [], timeout=UPGRADE_WAIT,
                              options=options, watch_member=True)
        except (SynsupError, StoreError) as e:
            await send(Refusal(str(e)))
            return True
        if reply.get("ok") is False:
            error = str(reply.get("error") or "refused")
            await send(Refusal(error if error.startswith(f"node {request.node}:") else f"node {request.node}: {error}"))
            return True
        await send(reply)
        return True
