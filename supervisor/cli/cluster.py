"""The `--cluster FILE` side of the command line: `synsup check --cluster F [--node N]` checks the
placement and prints each node's units (with --node, that node's start plan); `start --cluster F
--node N` joins the daemon to the cluster; `status --cluster F` reads the store. The store client
(supervisor/cluster/) is imported inside the functions that use it: never without --cluster."""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
from typing import TYPE_CHECKING, Any

from ... import version
from ..engine.environment import with_environment
from ..errors import SynsupError
from ..protocol import UnitStatus
from ..source import Loaded, Placement, Source
from . import commands
from .render import duration, print_findings, print_plan

if TYPE_CHECKING:
    from ..cluster_config import ClusterConfig
    from ..daemon.cluster_node import ClusterNode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cluster", metavar="FILE", help="cluster.yaml: the etcd store, the nodes and which "
                        "node runs which process (multi-host)")
    parser.add_argument("--node", metavar="NAME", help="which node of --cluster this is (default: the host name; "
                        "`check`: every node)")


def _cluster_file(path: str) -> ClusterConfig:
    """cluster.yaml, its reader imported only with --cluster (ipaddress, urllib.parse: 0.5 MB of a daemon)."""
    from ..cluster_config import read_cluster_config
    return read_cluster_config(path)


def this_node(args: argparse.Namespace, cluster: ClusterConfig) -> str:
    """--node, else the host name; one of cluster.yaml's nodes, or an error saying which there are."""
    name = args.node or socket.gethostname()
    if name not in cluster.nodes:
        given = f"--node {name}" if args.node else f"this host's name {name!r} (no --node given)"
        raise SynsupError(f"{cluster.file}: nodes: {given} is not a node of cluster {cluster.name}; pass "
                          f"--node with one of {', '.join(cluster.nodes)}")
    return name


def check(args: argparse.Namespace, source: Source) -> int:
    cluster = _cluster_file(args.cluster)
    node = this_node(args, cluster) if args.node else None
    loaded = source.load(args)
    if loaded.errors:
        return commands.check(loaded, args.json)
    placement = source.placement(args, loaded, cluster)
    mine = placement.units.get(node, []) if node else [s.name for s in loaded.specs]
    result = Loaded([s for s in loaded.specs if s.name in mine], placement.errors,
                    [*loaded.warnings, *placement.warnings], loaded.notes)
    if args.json:
        return commands.check(result, True, {"cluster": cluster.name, "node": node, "placement": placement.units})
    return _print_check(cluster, node, placement, result)


def _print_check(cluster: ClusterConfig, node: str | None, placement: Placement, result: Loaded) -> int:
    if commands.refused(result, " in the placement: nothing would start"):
        return 1
    if node:
        print(f"node {node} ({cluster.nodes[node].address}) of cluster {cluster.name} runs:")
        print_plan(result.specs)
    else:
        print_placement(cluster, placement)
    print_findings(result.warnings)
    return 0


def print_placement(cluster: ClusterConfig, placement: Placement) -> None:
    print(f"placement (cluster {cluster.name}):")
    for name, units in placement.units.items():
        print(f"  {name} ({cluster.nodes[name].address}): {', '.join(units) if units else 'nothing'}")


def status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cluster", metavar="FILE", help="every node of the cluster of FILE (cluster.yaml), "
                        "read from its store: up or down, address, config digest, the leader, every unit")


def status(args: argparse.Namespace) -> int:
    """Exit 0: every node up, on the leader's synsup version, a leader, every unit ready; 1: degraded;
    2: a plan waits for a node that is down; 3: the store does not answer."""
    from ..cluster.cluster_status import read_cluster_status
    from ..cluster.etcd_gateway import EtcdGateway
    cluster = _cluster_file(args.cluster)

    async def read() -> dict[str, Any]:
        store = EtcdGateway.from_config(cluster.store)
        try:
            return await read_cluster_status(cluster, store)
        finally:
            await store.close()
    report = asyncio.run(read())
    print(json.dumps(report, indent=2) if args.json else cluster_table(report))
    if report["plan"] and report["plan"]["blocked"]:
        return 2
    units = [UnitStatus(u["name"], state=u["state"]) for u in report["units"]]  # as published: name, node, state, pid
    healthy = report["leader"] and all(n["up"] for n in report["nodes"]) and commands.all_ready(units) \
        and not report["config"]["old_files_on"] and all(n.get("takes_part") is not False for n in report["nodes"])
    return 0 if healthy else 1


def cluster_table(report: dict[str, Any]) -> str:
    lines = [f"cluster {report['cluster']}: leader {report['leader'] or '(none)'}",
             f"  {'NODE':<16} {'STATE':<6} {'ADDRESS':<24} {'VERSION':<10} {'UP FOR':<8} CONFIG"]
    for n in report["nodes"]:
        age = duration(n["joined_seconds_ago"]) if n["up"] else "-"
        lines.append(f"  {n['name']:<16} {'up' if n['up'] else 'down':<6} {n['address'] or '-':<24} "
                     f"{n['version'] or '-':<10} {age:<8} {(n['config_digest'] or '-')[:12]}"
                     + ("" if n["in_cluster_yaml"] else "  (not in cluster.yaml)"))
    lines += [f"  versions: {n['name']} {n['why_not']}" for n in report["nodes"] if n.get("why_not")]
    behind = report.get("config", {}).get("old_files_on")
    if behind:
        lines.append(f"  config: {', '.join(behind)} still have the applied (old) config files: the change "
                     "waits for them")
    plan = report["plan"]
    if plan:
        lines.append(f"  plan: phase {plan['phase']}, waiting for {', '.join(plan['waiting_for']) or 'nothing'}"
                     + (f" ({plan['reason']})" if plan["reason"] else ""))
    if report["units"]:
        lines.append(f"  {'UNIT':<24} {'NODE':<16} {'STATE':<10} PID")
        lines += [f"  {u['name']:<24} {u['node']:<16} {u['state']:<10} {u['pid'] or '-'}" for u in report["units"]]
    code = {n["name"]: n.get("code_versions") or [] for n in report["nodes"] if n.get("code_versions")}
    if len({v for versions in code.values() for v in versions}) > 1:  # an upgrade halted midway
        lines.append("  code: two versions run: " + "; ".join(f"{n} {', '.join(v)}" for n, v in code.items())
                     + " (`synsup upgrade --node N` finishes an upgrade that halted)")
    return "\n".join(lines)


ADMIN = {
    "abort": "end the plan in progress: nothing goes forward, what already ran keeps running",
    "ack": "acknowledge the phase in progress for a node that is gone for good (its processes are known dead)",
    "remove-node": "forget a node that is down (its member, units and placement in the store)",
}


def admin_arguments(parser: argparse.ArgumentParser) -> None:
    """`synsup cluster abort|ack|remove-node --cluster FILE`."""
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in ADMIN.items():
        p = actions.add_parser(name, help=text, description=text)
        p.add_argument("--cluster", metavar="FILE", required=True, help="cluster.yaml: where the store is")
        if name == "ack":
            p.add_argument("--node", metavar="NAME", required=True, help="the node gone for good")
            p.add_argument("--phase", metavar="P", required=True, help="the phase in progress: its number "
                           "or its name, as `synsup status --cluster` shows it")
        if name == "remove-node":
            p.add_argument("node", metavar="NODE")


def admin(args: argparse.Namespace) -> int:
    """One line saying what was done; a refusal is a SynsupError (exit 1) saying why."""
    from ..cluster import cluster_admin
    from ..cluster.etcd_gateway import EtcdGateway
    from ..cluster.membership import Keys
    cluster = _cluster_file(args.cluster)
    keys = Keys(cluster.store.prefix)

    async def act() -> str:
        store = EtcdGateway.from_config(cluster.store)
        try:
            if args.action == "abort":
                return await cluster_admin.abort(store, keys)
            if args.action == "ack":
                return await cluster_admin.ack(store, keys, args.node, args.phase)
            return await cluster_admin.remove_node(store, keys, args.node)
        finally:
            await store.close()
    print(asyncio.run(act()))
    return 0


def joining(args: argparse.Namespace, source: Source, loaded: Loaded) -> tuple[ClusterConfig, str] | None:
    """`start --cluster F`: the cluster and this node, its placement checked before anything starts
    (the daemon never starts half-joined); None without --cluster."""
    if not getattr(args, "cluster", None):
        return None
    cluster = _cluster_file(args.cluster)
    node = this_node(args, cluster)
    placement = source.placement(args, loaded, cluster)
    print_findings([*placement.errors, *placement.warnings])
    if placement.errors:
        raise SynsupError(f"{len(placement.errors)} error(s) in the placement of {cluster.file}: nothing started")
    return cluster, node


def on_node(args: argparse.Namespace, source: Source, joined: tuple[ClusterConfig, str],
            loaded: Loaded) -> tuple[Source, Loaded]:
    """The source as this node sees it (its own units, stand-ins for the remote ones they need),
    and `loaded` so viewed."""
    from ..cluster.node_source import NodeSource
    cluster, node = joined
    viewed = NodeSource(source, cluster, node)
    return viewed, viewed.on_node(loaded, source.placement(args, loaded, cluster))


def moved_away(args: argparse.Namespace, source: Source, joined: tuple[ClusterConfig, str], loaded: Loaded,
               left: list[str]) -> tuple[dict[str, str], set[str], bool]:
    """`start --cluster`: of `left` (units an earlier daemon of this node left running that this
    node does not run now), those the cluster places on another node (unit -> node), and of these
    the ones the plan in progress still stops here (its stop step does: left to it), and whether
    these files are not the cluster's yet (no plan applies them: all are left to the plan that
    will; a unit is never retired for this node's files alone)."""
    from ..cluster.cluster_plan import Planner, PlanState, still_stops
    from ..cluster.etcd_gateway import EtcdGateway
    from ..cluster.membership import Keys, config_digest
    from ..cluster.store import StoreError
    cluster, node = joined
    placement = source.placement(args, loaded, cluster)
    where = {u: n for n, units in placement.units.items() for u in units}
    moved = {u: where[u] for u in left if where.get(u) not in (None, node)}
    if not moved:
        return {}, set(), False

    async def read() -> tuple[set[str], bool]:
        store = EtcdGateway.from_config(cluster.store)
        try:
            keys = Keys(cluster.store.prefix)
            planner = Planner(store, keys)
            plan, _ = await planner.read()
            mine = config_digest(loaded.watch_paths)
            applied = await store.get(keys.applied)
            if not (plan is not None and plan.state is PlanState.RUNNING and plan.config_digest == mine) \
                    and applied is not None and applied.value.decode() != mine:
                return set(moved), True
            if plan is None:
                return set(), False
            acked = await store.get(planner.ack_key(plan, plan.phase, node)) is not None
            return still_stops(plan, node, acked), False
        finally:
            await store.close()
    try:
        to_plan, pending = asyncio.run(read())
        return moved, to_plan & set(moved), pending
    except StoreError as e:
        raise SynsupError(f"{cluster.file}: store: {e}: cannot tell whether the plan in progress stops "
                          f"{', '.join(sorted(moved))} here (now placed on another node); nothing started") from None


def node_in_cluster(joined: tuple[ClusterConfig, str], loaded: Loaded, args: argparse.Namespace,
                    source: Source, variables: dict[str, str]) -> ClusterNode:
    """What the daemon starts first and closes last: this node registered in the store, its
    units' states published there and the other nodes' followed, and its part in changes across
    nodes (`source`: the node's view, from `on_node`)."""
    from ..cluster.etcd_gateway import EtcdGateway
    from ..cluster.membership import MemberRecord, Membership, config_digest
    from ..cluster.node_source import NodeSource
    from ..cluster.published_states import UnitStates
    from ..daemon.cluster_node import ClusterNode
    from ..daemon.cluster_steps import FullView
    assert isinstance(source, NodeSource)
    cluster, node = joined
    whole = source.source

    def load_full() -> FullView:
        full = with_environment(whole.load(args), variables)
        placement = whole.placement(args, full, cluster) if not full.errors else Placement()
        return FullView(full, {unit: n for n, units in reversed(placement.units.items()) for unit in units})
    record = MemberRecord(node, cluster.nodes[node].address, version(), config_digest(loaded.watch_paths), 0.0)
    states = UnitStates(Membership(cluster, node, record, EtcdGateway.from_config(cluster.store)))
    return ClusterNode(states, load_full(), load_full, whole.plan)
