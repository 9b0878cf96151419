"""One node's view of the deployment (supervisor/cluster/node_source.py): its own units, a
stand-in for each unit of another node that one of them depends on, and plans that name only
its own units. Pure: a scripted source, no store."""

from __future__ import annotations

import argparse
from typing import Any

from synsup.supervisor.cluster.node_source import NodeSource, node_specs
from synsup.supervisor.cluster_config import ClusterConfig, Node, StoreConfig
from synsup.supervisor.plans import Action, UpgradePlan
from synsup.supervisor.source import Loaded, Placement, Routes
from synsup.supervisor.spec import UnitSpec

PLACEMENT = {"a": ["redis", "postgres", "main", "sender1"], "b": ["postgres", "persister1", "generic1"]}


def spec(name: str, *deps: str, step: int = 0, argv: tuple[str, ...] | None = ("run",)) -> UnitSpec:
    return UnitSpec(name, argv and (*argv, name), dependencies=deps, step=step, describe=f"{name} process")


SPECS = [spec("redis"), spec("postgres", argv=None), spec("main", "redis", "postgres", step=1),
         spec("persister1", "main", step=2), spec("generic1", "main", "persister1", step=3),
         spec("sender1", "main", "persister1", step=3)]


def test_a_node_runs_its_own_units_and_a_stand_in_for_each_remote_dependency() -> None:
    b = node_specs(SPECS, PLACEMENT, "b")
    assert [(s.name, s.argv is not None, s.reported) for s in b] == [
        ("postgres", False, False), ("main", False, True), ("persister1", True, False), ("generic1", True, False)]
    main = b[1]
    assert (main.step, main.dependencies, main.probes, main.describe) == (1, (), (), "main process (on node a)")


def test_a_node_without_remote_dependencies_gets_no_stand_in() -> None:
    a = node_specs(SPECS, PLACEMENT, "a")
    assert [(s.name, s.reported) for s in a] == [("redis", False), ("postgres", False), ("main", False),
                                                  ("persister1", True), ("sender1", False)]
    assert node_specs(SPECS, {"a": [s.name for s in SPECS]}, "a") == SPECS


class ScriptedSource:
    module = "synsup"
    description = "a scripted source"

    def __init__(self, placement: Placement, actions: list[Action]) -> None:
        self.placement_result, self.actions = placement, actions

    def add_arguments(self, parser: argparse.ArgumentParser, command: str) -> None: ...

    def load(self, args: argparse.Namespace) -> Loaded:
        return Loaded(list(SPECS), watch_paths=["/etc/synapse"])

    def plan(self, old: Loaded, new: Loaded) -> list[Action]:
        return self.actions

    def code_refusal(self, args: argparse.Namespace, loaded: Loaded, installed_version: str) -> str:
        return ""

    def upgrade(self, args: argparse.Namespace, current: Loaded, python: str | None,
                allow_downtime: bool) -> UpgradePlan:
        return UpgradePlan(actions=self.actions, loaded=self.load(args), reloader=lambda: self.load(args))

    def routes(self, args: argparse.Namespace) -> Routes:
        return Routes("")

    def placement(self, args: argparse.Namespace, loaded: Loaded, cluster: ClusterConfig) -> Placement:
        return self.placement_result


CLUSTER = ClusterConfig("cluster.yaml", "c", StoreConfig(("http://10.0.0.9:2379",), "/c/"),
                        {"a": Node("a", "10.0.0.1"), "b": Node("b", "10.0.0.2")}, {})
ACTIONS = [Action("stop", ("persister1", "main"), "stream writers change"), Action("start", ("main",), "x"),
           Action("restart", ("generic1",), "y"), Action("signal", ("sender1",), "z")]


def on_b(placement: Placement = Placement(PLACEMENT), actions: list[Action] = ACTIONS) -> NodeSource:
    return NodeSource(ScriptedSource(placement, actions), CLUSTER, "b")


def test_every_load_is_this_nodes_view_so_a_reload_never_starts_another_nodes_unit() -> None:
    loaded = on_b().load(argparse.Namespace())
    assert [s.name for s in loaded.specs] == ["postgres", "main", "persister1", "generic1"]
    assert loaded.watch_paths == ["/etc/synapse"] and not loaded.errors


def test_a_load_whose_placement_is_wrong_is_refused_with_its_errors() -> None:
    error: Any = object()
    loaded = on_b(Placement({}, [error])).load(argparse.Namespace())
    assert loaded.specs == [] and loaded.errors == [error]


def test_a_plan_names_only_this_nodes_own_units() -> None:
    source = on_b()
    loaded = source.load(argparse.Namespace())
    assert source.plan(loaded, loaded) == [Action("stop", ("persister1",), "stream writers change"),
                                           Action("restart", ("generic1",), "y")]


def test_an_upgrade_restarts_and_then_runs_only_this_nodes_units() -> None:
    source = on_b()
    plan = source.upgrade(argparse.Namespace(), source.load(argparse.Namespace()), None, False)
    assert [a.units for a in plan.actions] == [("persister1",), ("generic1",)]
    assert plan.loaded is not None and plan.reloader is not None
    assert [s.name for s in plan.loaded.specs] == [s.name for s in plan.reloader().specs] == \
        ["postgres", "main", "persister1", "generic1"]
