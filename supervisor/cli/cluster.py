"""The `--cluster FILE` side of the command line: `synsup check --cluster F [--node N]` checks the
placement and prints each node's units (with --node, that node's start plan). Nothing here
imports the store client: `check` never talks to the store."""

from __future__ import annotations

import argparse
import socket
import sys

from ..cluster_config import ClusterConfig, read_cluster_config
from ..errors import SynsupError
from ..source import Loaded, Placement, Source
from . import commands
from .render import print_findings, print_plan


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cluster", metavar="FILE", help="cluster.yaml: the etcd store, the nodes and which "
                        "node runs which process (multi-host)")
    parser.add_argument("--node", metavar="NAME", help="which node of --cluster this is (default: the host name; "
                        "`check`: every node)")


def this_node(args: argparse.Namespace, cluster: ClusterConfig) -> str:
    """--node, else the host name; one of cluster.yaml's nodes, or an error saying which there are."""
    name = args.node or socket.gethostname()
    if name not in cluster.nodes:
        given = f"--node {name}" if args.node else f"this host's name {name!r} (no --node given)"
        raise SynsupError(f"{cluster.file}: nodes: {given} is not a node of cluster {cluster.name}; pass "
                          f"--node with one of {', '.join(cluster.nodes)}")
    return name


def check(args: argparse.Namespace, source: Source) -> int:
    cluster = read_cluster_config(args.cluster)
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
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    if result.errors:
        print_findings([*result.errors, *result.warnings])
        print(f"{len(result.errors)} error(s) in the placement: nothing would start", file=sys.stderr)
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
