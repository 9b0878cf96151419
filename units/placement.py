"""Which node runs which process (`synsup check --cluster`): cluster.yaml's `placement`, and the
config's own word (a process whose instance_map host is a node's address is on that node; Redis
on the node its `redis.host` names), checked so that processes on different hosts can reach
each other. Each rule is one small function; all of them run."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass

from synsup.supervisor.cluster_config import ClusterConfig
from synsup.supervisor.loopback import is_loopback
from synsup.supervisor.source import Placement
from synsup.supervisor.spec import UnitSpec

from .model import WILDCARDS, Deployment, Finding, error, warning
from .rules_agreement import has_replication_secret
from .yamldoc import Where, where

MUST_BE_PLACED = ("main", "redis")  # the rule: never left to an inference


@dataclass(frozen=True)
class Claim:
    """The config puts a process on a node: which node, and where the config says so."""

    node: str
    at: Where
    says: str  # e.g. "instance_map.persister1.host 10.0.0.2"


class Placer:
    def __init__(self, d: Deployment, specs: list[UnitSpec], cluster: ClusterConfig) -> None:
        self.d, self.specs, self.cluster = d, specs, cluster
        self.claims = claims_of(d, cluster)
        self.run = [s.name for s in specs if s.argv is not None]  # what synsup starts: placed

    def at(self, key: str) -> Where:
        return Where(self.cluster.file, self.cluster.line_of(key))

    def node_of(self, name: str) -> str | None:
        claim = self.claims.get(name)
        return self.cluster.placement.get(name) or (claim.node if claim else None)

    def nodes_in_use(self) -> set[str]:
        return {node for name in self.run if (node := self.node_of(name))}


def claims_of(d: Deployment, cluster: ClusterConfig) -> dict[str, Claim]:
    """Process name -> the node its instance_map entry's host (Redis: redis.host) is the address of."""
    claims = {}
    instance_map = d.shared.get("instance_map")
    for instance, entry in (instance_map.items() if isinstance(instance_map, dict) else []):
        process = d.by_instance(str(instance))
        host = str(entry.get("host", "")) if isinstance(entry, dict) else ""
        if process is not None and (node := cluster.node_at(host)):
            claims[process.name] = Claim(node, where(instance_map, instance), f"instance_map.{instance}.host {host}")
    if d.redis is not None and (node := cluster.node_at(d.redis.host)):
        claims["redis"] = Claim(node, d.redis.at, f"redis.host {d.redis.host}")
    return claims


def unknown_processes(p: Placer) -> Iterator[Finding]:
    names = {s.name for s in p.specs}
    for name in p.cluster.placement:
        if name not in names:
            yield error(p.at(f"placement.{name}"), f"placement.{name}: the deployment has no process {name!r}; "
                        f"its processes are {', '.join(s.name for s in p.specs)}")


def placed_twice(p: Placer) -> Iterator[Finding]:
    for name, node in p.cluster.placement.items():
        claim = p.claims.get(name)
        if claim is not None and claim.node != node:
            yield error(p.at(f"placement.{name}"), f"placement.{name}: {name} is placed on {node}, but "
                        f"{claim.says} ({claim.at.file}:{claim.at.line}) is node {claim.node}'s address; "
                        "place it once: remove this line or correct the host")


def placed_nowhere(p: Placer) -> Iterator[Finding]:
    for name in p.run:
        if name in MUST_BE_PLACED and name not in p.cluster.placement:
            yield error(p.at("placement"), f"{name} is on no node: {name} must be placed explicitly; add "
                        f"`{name}: NODE` under placement")
        elif p.node_of(name) is None:
            yield error(p.at("placement"), f"{name} is on no node: add `{name}: NODE` under placement, or give "
                        "it an instance_map entry whose host is a node's address")


def unreachable_hosts(p: Placer) -> Iterator[Finding]:
    """Across hosts an instance_map entry must name a host the other nodes reach."""
    instance_map = p.d.shared.get("instance_map")
    if len(p.nodes_in_use()) < 2 or not isinstance(instance_map, dict):
        return
    for instance, entry in instance_map.items():
        process = p.d.by_instance(str(instance))
        node = p.node_of(process.name) if process else None
        if isinstance(entry, dict) and (problem := _unreachable(entry.get("host"), entry.get("path"))):
            yield error(where(instance_map, instance), f"instance_map.{instance}: {problem}, but the processes run "
                        f"on {len(p.nodes_in_use())} nodes; {_fix(p, node)}")


def _unreachable(host: object, path: object) -> str:
    if path is not None:
        return f"the UNIX socket {path} cannot be reached from another host"
    if host is None or is_loopback(str(host)):
        return f"{host or 'localhost'} is reachable from its own host only"
    return f"{host} is no address to connect to" if str(host) in WILDCARDS else ""


def _fix(p: Placer, node: str | None, who: str = "it") -> str:
    address = f" ({node}: {p.cluster.nodes[node].address})" if node else ""
    return f"write the address of the node {who} runs on{address}"


def unreachable_main_legacy(p: Placer) -> Iterator[Finding]:
    """The v1.66 dialect: a worker reaches main at its worker_replication_host."""
    main = p.node_of("main")
    for w in p.d.workers:
        host, node = w.config.get("worker_replication_host"), p.node_of(w.name)
        if host is not None and node not in (None, main) and (problem := _unreachable(host, None)):
            yield error(w.at("worker_replication_host"), f"{w.name}: worker_replication_host {problem}, but "
                        f"{w.name} runs on {node} and main on {main}; {_fix(p, main, 'main')}")


def unreachable_redis(p: Placer) -> Iterator[Finding]:
    redis = p.d.redis
    if redis is None or len(p.nodes_in_use()) < 2:
        return
    if problem := _unreachable(redis.host, redis.path):
        yield error(redis.at, f"redis: {problem}, but processes on {len(p.nodes_in_use())} nodes use it; "
                    f"{_fix(p, p.node_of('redis'))}")


def secret_across_hosts(p: Placer) -> Iterator[Finding]:
    nodes = sorted(p.nodes_in_use())
    if len(nodes) > 1 and not has_replication_secret(p.d):
        yield warning(p.d.shared.where("instance_map"), f"processes on nodes {', '.join(nodes)} replicate across "
                      "hosts without `worker_replication_secret`: anyone who reaches a replication listener can "
                      "act as a worker; set a random secret in the shared config", "no-replication-secret")


RULES = (unknown_processes, placed_twice, placed_nowhere, unreachable_hosts, unreachable_main_legacy,
         unreachable_redis)
WARNINGS = (secret_across_hosts,)


def place(d: Deployment, specs: list[UnitSpec], cluster: ClusterConfig, quiet: Collection[str] = ()) -> Placement:
    """The placement, with every error; warnings whose code is in `quiet` (ignored, or already said
    by `synsup check`'s own rules) are left out."""
    p = Placer(d, specs, cluster)
    errors = [f for rule in RULES for f in rule(p)]
    warnings = [f for rule in WARNINGS for f in rule(p) if f.code not in quiet]
    return Placement({} if errors else units_by_node(p), errors, warnings)


def units_by_node(p: Placer) -> dict[str, list[str]]:
    """Each node's units in start order; an external unit (only probed) goes with its dependents."""
    placed = {name: node for name in p.run if (node := p.node_of(name))}
    units: dict[str, list[str]] = {node: [] for node in p.cluster.nodes}
    for spec in p.specs:
        if spec.name in placed:
            units[placed[spec.name]].append(spec.name)
            continue
        needing = {placed[s.name] for s in p.specs if spec.name in s.dependencies and s.name in placed}
        for node in sorted(needing | ({p.cluster.placement[spec.name]} if spec.name in p.cluster.placement else set())):
            units[node].append(spec.name)
    return units
