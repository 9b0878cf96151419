"""Rules about the processes themselves: apps, names, listeners, forking, logs."""

from __future__ import annotations

import os
from collections.abc import Iterator

from synsup.supervisor.spec import NAME_RULE, valid_name

from .model import (
    HOMESERVER_APP,
    WILDCARDS,
    WORKER_APPS,
    Deployment,
    Finding,
    Listener,
    Process,
    error,
)
from .yamldoc import where

RESERVED_NAMES = ("main", "master", "redis")


def worker_apps(d: Deployment) -> Iterator[Finding]:
    for doc in d.extra.get("worker_docs", []):
        app = doc.get("worker_app")
        if app is None:
            yield error(where(doc), "the worker has no `worker_app`; add `worker_app: "
                        "synapse.app.generic_worker` (or remove the file from the worker directory)")
        elif app not in WORKER_APPS:
            yield error(where(doc, "worker_app"), f"worker_app {app!r} is not one Synapse accepts; "
                        f"use one of: {', '.join(WORKER_APPS)} (or {HOMESERVER_APP} for the main process)")


def main_files(d: Deployment) -> Iterator[Finding]:
    mains = d.extra.get("main_files", [])
    for doc in mains[1:]:
        yield error(where(doc, "worker_app"), f"a second main process file (the first is "
                    f"{mains[0].file}); keep one file with `worker_app: {HOMESERVER_APP}`")
    for doc in mains:
        for key in doc:
            if isinstance(key, str) and key.startswith("worker_") and key != "worker_app":
                yield error(where(doc, key), f"main process file sets `{key}`, a worker option; "
                            "remove it (the main process takes no worker_* keys)")


def unique_names(d: Deployment) -> Iterator[Finding]:
    seen: dict[str, Process] = {}
    for w in d.workers:
        if w.instance in RESERVED_NAMES:
            yield error(w.at("worker_name"), f"worker name {w.instance!r} is reserved for "
                        f"synsup's {w.instance!r} unit; give the worker another `worker_name`")
        elif w.instance in seen:
            yield error(w.at("worker_name"), f"worker {w.instance!r} has the same instance name as "
                        f"{seen[w.instance].file}; give each worker a unique `worker_name`")
        else:
            seen[w.instance] = w


def safe_names(d: Deployment) -> Iterator[Finding]:
    for w in d.workers:
        if not valid_name(w.instance):
            yield error(w.at("worker_name"), f"worker name {w.instance!r} cannot be a synsup unit name: use "
                        f"{NAME_RULE} (Synapse accepts more, but synsup makes the name a log file name, "
                        "a record key and a metrics label)")


def _collides(a: tuple, b: tuple) -> bool:
    if a[0] == "unix" or b[0] == "unix":
        return a == b
    return a[1] == b[1] and (a[0] == b[0] or a[0] in WILDCARDS or b[0] in WILDCARDS)


def listener_collisions(d: Deployment) -> Iterator[Finding]:
    taken: list[tuple[tuple, Process, Listener]] = []
    for p in d.processes:
        for listener in p.listeners:
            clash = _first_clash(taken, listener, p)
            if clash:
                other_p, other = clash
                yield error(listener.at, f"{p.name}: listener {listener.describe()} uses the same "
                            f"address as {other_p.name}'s listener at {other.at.file}:{other.at.line}; "
                            "give one of them another port or bind address")
            taken.extend((ep, p, listener) for ep in listener.endpoints())


def _first_clash(taken: list, listener: Listener, p: Process) -> tuple[Process, Listener] | None:
    for endpoint in listener.endpoints():
        for other_ep, other_p, other in taken:
            if _collides(endpoint, other_ep):
                return other_p, other
    return None


def tcp_replication(d: Deployment) -> Iterator[Finding]:
    for p in d.processes:
        for listener in p.listeners:
            if listener.type == "replication":
                yield error(listener.at, f"{p.name}: a listener of `type: replication` is the TCP "
                            "replication removed in Synapse 1.67; use `type: http` with the "
                            "`replication` resource (and Redis)")
        if p.kind == "worker" and "worker_replication_port" in p.config:
            yield error(p.at("worker_replication_port"), f"{p.name}: `worker_replication_port` is "
                        "TCP replication, removed in Synapse 1.67; remove it and enable Redis")


def no_daemonize(d: Deployment) -> Iterator[Finding]:
    for p in d.processes:
        for key in ("daemonize", "worker_daemonize"):
            if p.config.get(key) is True and (p.kind == "worker" or key == "daemonize"):
                yield error(p.at(key), f"{p.name}: `{key}: true` makes Synapse fork away from its "
                            f"supervisor; set `{key}: false` or remove it")


def log_configs(d: Deployment) -> Iterator[Finding]:
    reported: set[tuple[str, str]] = set()
    for p in d.processes:
        key = "log_config" if p.kind == "main" else "worker_log_config"
        path = p.config.get(key)
        if isinstance(path, str) and not os.path.isfile(path):
            at = p.at(key)
            if (at.file, path) not in reported:
                reported.add((at.file, path))
                yield error(at, f"{p.name}: `{key}` names {path!r}, which does not exist; "
                            "create it or fix the path")


RULES = (worker_apps, main_files, unique_names, safe_names, listener_collisions, tcp_replication,
         no_daemonize, log_configs)
