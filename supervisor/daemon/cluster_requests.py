"""Cluster-wide `synsup restart|stop|start UNIT` (issue 18), the daemon's side: given on any
node, a request naming units another node runs is forwarded through the store
(cluster/unit_requests.py) and answered with that node's reply; the requests for this node's
units are carried out here, each as an operation of the daemon's queue, then answered."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..cluster.unit_requests import VERBS, answer, ask, pending
from ..errors import SynsupError
from ..protocol import Refusal

if TYPE_CHECKING:
    from .cluster_node import ClusterNode


class UnitRequests:
    def __init__(self, node: ClusterNode) -> None:
        self.node = node
        self._serving: set[str] = set()  # request keys submitted here

    def remote(self, raw: dict[str, Any]) -> tuple[dict[str, list[str]], list[str]]:
        """(node -> the named units it runs, the named units this node runs) for a restart/stop/start."""
        d = self.node.daemon
        if raw.get("cmd") not in VERBS or d is None or d.supervisor is None:
            return {}, []
        local = {n for n, u in d.supervisor.units.items() if not u.spec.reported}
        node_of = self.node.base.node_of
        elsewhere: dict[str, list[str]] = {}
        for name in raw.get("units") or ():
            if name not in local and node_of.get(name, self.node.node) != self.node.node:
                elsewhere.setdefault(node_of[name], []).append(name)
        return elsewhere, [n for n in raw.get("units") or () if n in local]

    async def forwarded(self, raw: dict[str, Any]) -> Refusal | dict[str, Any] | None:
        """The reply to a request for units other nodes run (as the owning daemon answered it);
        None when it names none (handled here)."""
        elsewhere, here = self.remote(raw)
        if not elsewhere:
            return None
        if here:
            return Refusal(f"{', '.join(here)} run here, {', '.join(n for u in elsewhere.values() for n in u)} on "
                           "other nodes: give them in separate commands")
        try:
            replies = [await ask(self.node.store, self.node.keys, node, raw["cmd"], units)
                       for node, units in sorted(elsewhere.items())]
        except SynsupError as e:  # that node does not answer, or the store does not
            return Refusal(str(e))
        if len(replies) == 1:
            return replies[0]
        failed = [r for r in replies if not r.get("ok", True)]
        return failed[0] if failed else {**replies[0], "units": [u for r in replies for u in r.get("units", [])]}

    async def serve(self) -> None:
        """This node's pending requests, each submitted once as an operation."""
        for key, request in await pending(self.node.store, self.node.keys, self.node.node):
            if key not in self._serving:
                self._serving.add(key)
                self.node.submit(f"{request['verb']} {' '.join(request['units'])} (asked through the cluster)",
                                  self._carry_out(key, request))

    def _carry_out(self, key: str, request: dict[str, Any]) -> Callable[[], Awaitable[None]]:
        async def work() -> None:
            d = self.node.daemon
            assert d is not None and d.supervisor is not None
            sup = d.supervisor
            names = [n for n in request["units"] if n in sup.units]
            act = {"restart": sup.restart, "stop": sup.hold, "start": sup.start_units}[request["verb"]]
            await act(names)
            d.settle()
            await answer(self.node.store, key, d.status(names))
        return work
