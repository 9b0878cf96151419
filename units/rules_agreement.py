"""Rules about what every process must agree on: the shared-only keys (a worker file that
overrides one with another value splits the deployment), and the replication secret."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from synsup.supervisor.loopback import is_loopback

from .model import Deployment, Finding, Process, error, warning
from .roles import DUTY_OPTIONS, as_names
from .rules_replication import replication_listeners
from .yamldoc import where

SECRET_KEYS = ("worker_replication_secret", "worker_replication_secret_path")
WHY_AGREE = {
    "worker_replication_secret": "replication requests between them fail with 'Invalid Authorization header'",
    "worker_replication_secret_path": "replication requests between them fail with 'Invalid Authorization "
                                      "header' when the files differ",
    "instance_map": "or replication requests go to different places",
    "stream_writers": "or they disagree on which process writes a stream (events are sharded by position "
                      "and the first device_lists writer is special, so the order matters too)",
    "redis": "or processes on another Redis never see the others' replication",
    "database": "or processes write to another database",
}
WHY_AGREE_ON_DUTY = "or they disagree on which process does the work (done twice, or not at all)"


def _database(value: Any) -> Any:
    """What makes two database sections the same database (pool sizes may differ per process)."""
    if not isinstance(value, dict) or not isinstance(value.get("args"), dict):
        return value
    args = value["args"]
    return (value.get("name"), args.get("database", args.get("dbname")), args.get("host"), args.get("port"))


def _redis(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    return tuple(value.get(k) for k in ("enabled", "host", "port", "path", "dbid"))


MEANING: dict[str, Callable[[Any], Any]] = {"database": _database, "redis": _redis}
MEANING.update({option: as_names for option in DUTY_OPTIONS})
SHARED_ONLY_KEYS = tuple(WHY_AGREE) + DUTY_OPTIONS


def _meaning(key: str, value: Any) -> Any:
    return MEANING.get(key, lambda v: v)(value)


def _overrides(d: Deployment) -> Iterator[tuple[Process, str]]:
    """(process, key) for every shared-only key a process's own file sets to another meaning."""
    for p in d.processes:
        own = p.own if p.kind == "worker" or d.main_file is not None else {}
        for key in SHARED_ONLY_KEYS:
            if key in own and _meaning(key, own[key]) != _meaning(key, d.shared.get(key)):
                yield p, key


def shared_keys_agree(d: Deployment) -> Iterator[Finding]:
    for p, key in _overrides(d):
        shared_at = d.shared.where(key)
        other = (f"the shared config's ({shared_at.file}:{shared_at.line})" if key in d.shared
                 else "the shared config's (unset there: Synapse's default)")
        yield error(where(p.own, key), f"{p.name}: `{key}` here differs from {other}{_order_hint(d, p, key)}; "
                    f"every process must agree, {WHY_AGREE.get(key, WHY_AGREE_ON_DUTY)}: remove it "
                    f"from {p.own.file} or make it the same")


def _order_hint(d: Deployment, p: Process, key: str) -> str:
    mine, shared = p.own[key], d.shared.get(key)
    if key != "stream_writers" or not isinstance(mine, dict) or not isinstance(shared, dict):
        return ""
    same_sets = mine.keys() == shared.keys() and all(
        sorted(as_names(mine[s])) == sorted(as_names(shared[s])) for s in mine)
    return " (the same writers in another order)" if same_sets else ""


def has_replication_secret(d: Deployment) -> bool:
    return any(d.shared.get(key) for key in SECRET_KEYS)


def network_hosts(d: Deployment) -> list[str]:
    instance_map = d.shared.get("instance_map")
    entries = instance_map.values() if isinstance(instance_map, dict) else []
    return [str(e["host"]) for e in entries if isinstance(e, dict) and e.get("path") is None
            and e.get("host") is not None and not is_loopback(str(e["host"]))]


def secret_over_network(d: Deployment) -> Iterator[Finding]:
    hosts = network_hosts(d)
    if d.workers and hosts and not has_replication_secret(d):
        yield warning(d.shared.where("instance_map"), f"processes replicate over the network "
                      f"({', '.join(dict.fromkeys(hosts))}) without `worker_replication_secret`: anyone who "
                      "reaches a replication listener can act as a worker; set a random secret in the "
                      "shared config", "no-replication-secret")


def secret_synapse_can_send(d: Deployment) -> Iterator[Finding]:
    secret = d.shared.get("worker_replication_secret")
    if not isinstance(secret, str):
        return
    problem = ("has a space" if " " in secret else "is not ASCII" if not secret.isascii()
               else "has a control character" if any(ord(c) < 32 or ord(c) == 127 for c in secret) else "")
    if problem:
        yield error(d.shared.where("worker_replication_secret"), f"`worker_replication_secret` {problem}: "
                    "Synapse sends it as `Authorization: Bearer SECRET`, split on spaces and in ASCII, so "
                    "every replication request would fail; use letters, digits and punctuation only")


def exposed_replication(d: Deployment) -> Iterator[Finding]:
    """A listener off loopback without a secret (when instance_map names network hosts, the
    no-replication-secret warning says it once)."""
    if has_replication_secret(d) or (d.workers and network_hosts(d)):
        return
    for p in d.processes:
        for listener in replication_listeners(p):
            if listener.path is None and not all(is_loopback(a) for a in listener.addresses):
                yield warning(listener.at, f"{p.name}: replication listener on "
                              f"{'/'.join(listener.addresses)} without `worker_replication_secret`; "
                              "bind it to 127.0.0.1 or set a secret", "exposed-replication")


RULES = (shared_keys_agree, secret_synapse_can_send)
WARNINGS = (secret_over_network, exposed_replication)
