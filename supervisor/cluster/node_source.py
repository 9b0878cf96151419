"""The deployment as one node of a cluster runs it (`start --cluster F --node N`): every load is
this node's units (the source's placement says which) and a stand-in for each unit of another
node that one of them depends on; plans name only this node's own units. A stand-in is never
started or probed: its readiness is what the store says its node published (`UnitSpec.reported`),
so a dependent waits for the remote unit, not for a local one that does not exist."""

from __future__ import annotations

import argparse
import dataclasses

from ..cluster_config import ClusterConfig
from ..plans import Action, UpgradePlan
from ..source import Loaded, Placement, ProxyLayout, Routes, Source
from ..spec import UnitSpec


def node_specs(specs: list[UnitSpec], placement: dict[str, list[str]], node: str) -> list[UnitSpec]:
    """This node's specs in their order, with a stand-in in place of each remote dependency."""
    mine = set(placement.get(node, []))
    needed = {d for s in specs if s.name in mine for d in s.dependencies} - mine
    where = {name: n for n, names in placement.items() for name in names if n != node}
    return [s if s.name in mine else stand_in(s, where.get(s.name, "?")) for s in specs
            if s.name in mine or s.name in needed]


def stand_in(spec: UnitSpec, node: str) -> UnitSpec:
    return UnitSpec(spec.name, None, step=spec.step, kind=spec.kind, app=spec.app, notify=False, reported=True,
                    describe=f"{spec.describe or spec.name} (on node {node})", code_name=spec.code_name,
                    step_name=spec.step_name)


def own_units(action: Action, local: set[str]) -> Action | None:
    """The action cut down to this node's units; None when it names none of them."""
    units = tuple(u for u in action.units if u in local)
    return dataclasses.replace(action, units=units) if units else None


class NodeSource:
    """A Source whose loads and plans are one node's (the Source protocol, wrapped)."""

    def __init__(self, source: Source, cluster: ClusterConfig, node: str) -> None:
        self.source, self.cluster, self.node = source, cluster, node
        self.module, self.description = source.module, source.description

    def on_node(self, loaded: Loaded, placement: Placement) -> Loaded:
        if loaded.errors or placement.errors:
            return dataclasses.replace(loaded, specs=[], errors=[*loaded.errors, *placement.errors])
        return dataclasses.replace(loaded, specs=node_specs(loaded.specs, placement.units, self.node),
                                   warnings=[*loaded.warnings, *placement.warnings])

    def load(self, args: argparse.Namespace) -> Loaded:
        return self._placed(args, self.source.load(args))

    def _placed(self, args: argparse.Namespace, loaded: Loaded) -> Loaded:
        placement = Placement() if loaded.errors else self.source.placement(args, loaded, self.cluster)
        return self.on_node(loaded, placement)

    def plan(self, old: Loaded, new: Loaded) -> list[Action]:
        return self._own(self.source.plan(old, new), old, new)

    def _own(self, actions: list[Action], *loads: Loaded) -> list[Action]:
        local = {s.name for loaded in loads for s in loaded.specs if not s.reported}
        return [mine for a in actions if (mine := own_units(a, local))]

    def add_arguments(self, parser: argparse.ArgumentParser, command: str) -> None:
        self.source.add_arguments(parser, command)

    def code_refusal(self, args: argparse.Namespace, loaded: Loaded, installed_version: str) -> str:
        return self.source.code_refusal(args, loaded, installed_version)

    def upgrade(self, args: argparse.Namespace, current: Loaded, python: str | None,
                allow_downtime: bool) -> UpgradePlan:
        """This node's part of the upgrade: its units restarted, its view of what runs afterwards."""
        plan = self.source.upgrade(args, current, python, allow_downtime)
        new = self._placed(args, plan.loaded) if plan.loaded is not None else None
        reloader = plan.reloader
        return dataclasses.replace(plan, actions=self._own(plan.actions, current, *([new] if new else [])),
                                   loaded=new, reloader=(lambda: self._placed(args, reloader())) if reloader else None)

    def routes(self, args: argparse.Namespace) -> Routes:
        return self.source.routes(args)

    def proxy_layout(self, args: argparse.Namespace, loaded: Loaded) -> ProxyLayout:
        """The proxy this node's daemon keeps in step fronts this node's units."""
        return self.source.proxy_layout(args, loaded)

    def placement(self, args: argparse.Namespace, loaded: Loaded, cluster: ClusterConfig) -> Placement:
        return self.source.placement(args, loaded, cluster)
