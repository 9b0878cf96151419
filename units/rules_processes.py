"""Rules about the processes themselves: apps, names, listeners, forking, logs."""

from __future__ import annotations

import difflib
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
    warning,
)
from .yamldoc import Where, where

RESERVED_NAMES = ("main", "master", "redis", "postgres")


def worker_apps(d: Deployment) -> Iterator[Finding]:
    for doc in d.extra.get("worker_docs", []):
        app = doc.get("worker_app")
        if app is None:
            yield error(where(doc), "the worker has no `worker_app`; add `worker_app: "
                        "synapse.app.generic_worker` (or remove the file from the worker directory)")
        elif app not in WORKER_APPS:
            yield error(where(doc, "worker_app"), f"worker_app {app!r} is not one Synapse accepts; "
                        f"{_did_you_mean(str(app))}use one of: {', '.join(WORKER_APPS)} "
                        f"(or {HOMESERVER_APP} for the main process)")


def _did_you_mean(app: str) -> str:
    close = difflib.get_close_matches(app, (HOMESERVER_APP,) + WORKER_APPS, n=1, cutoff=0.85)
    if not close:
        return ""
    role = "the main process" if close[0] == HOMESERVER_APP else "a worker"
    return f"did you mean {close[0]} ({role})? "


WORKER_ONLY_KEYS = ("worker_name", "worker_listeners")


def main_files(d: Deployment) -> Iterator[Finding]:
    mains = d.extra.get("main_files", [])
    for doc in mains[1:]:
        if not any(k in doc for k in WORKER_ONLY_KEYS):
            yield error(where(doc, "worker_app"), f"a second main process file (the first is "
                        f"{mains[0].file}); keep one file with `worker_app: {HOMESERVER_APP}`")
    for doc in mains:
        yield from _main_file_keys(doc)


def _main_file_keys(doc) -> Iterator[Finding]:
    """A main file that configures a worker is a worker with the wrong app: say that, once."""
    worker_keys = [k for k in WORKER_ONLY_KEYS if k in doc]
    if worker_keys:
        yield error(where(doc, "worker_app"), f"`worker_app: {HOMESERVER_APP}` makes this file the main "
                    f"process, but it sets `{worker_keys[0]}`: if it is a worker, set `worker_app: "
                    f"synapse.app.generic_worker`; if it is main, remove the worker_* keys")
        return
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


def who(d: Deployment, names: list[str]) -> str:
    """The processes a finding is about: "every process" when it is all of them."""
    return "every process" if len(names) == len(d.processes) > 1 else ", ".join(names)


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


def server_name(d: Deployment) -> Iterator[Finding]:
    if not d.shared.get("server_name"):
        yield error(d.shared.where("server_name"), "no `server_name`: Synapse cannot start without it; "
                    "add `server_name: example.org` (your Matrix domain) to the shared config")


def media_listeners(d: Deployment) -> Iterator[Finding]:
    for p in d.processes:
        if p.config.get("enable_media_repo", True) is not False or p.app == "synapse.app.media_repository":
            continue
        for listener in p.listeners:
            if "media" in listener.resources:
                at = p.at("enable_media_repo")
                yield error(listener.at, f"{p.name}: a `media` listener, but `enable_media_repo` is false "
                            f"for this process ({at.file}:{at.line}): Synapse ignores the listener and media "
                            f"requests get 404; set `enable_media_repo: true` in {p.file or 'the shared config'}")


def _redis_endpoint(d: Deployment) -> tuple | None:
    if d.redis is None or d.redis.path:
        return ("unix", d.redis.path) if d.redis else None
    return ("127.0.0.1" if d.redis.host == "localhost" else d.redis.host, d.redis.port)


def listener_on_redis(d: Deployment) -> Iterator[Finding]:
    redis = _redis_endpoint(d)
    if redis is None or d.redis is None:
        return
    for p in d.processes:
        for listener in p.listeners:
            if any(_collides(endpoint, redis) for endpoint in listener.endpoints()):
                yield error(listener.at, f"{p.name}: listener {listener.describe()} takes the address of "
                            f"Redis (`redis:` at {d.redis.at.file}:{d.redis.at.line}); give the listener "
                            "another port")


def yml_worker_files(d: Deployment) -> Iterator[Finding]:
    if not d.workers_dir or not os.path.isdir(d.workers_dir):
        return
    for name in sorted(os.listdir(d.workers_dir)):
        if name.endswith(".yml"):
            yield warning(Where(os.path.join(d.workers_dir, name)), "ignored: only *.yaml files are "
                          f"worker files; rename it to {name[:-4]}.yaml if it is one", "yml-file")


def conf_d_not_read(d: Deployment) -> Iterator[Finding]:
    """Debian's matrix-synapse reads conf.d/ beside homeserver.yaml; Synapse and synsup read only -c."""
    read_dirs = {os.path.dirname(os.path.abspath(f)) for f in d.config_files}
    for confd in dict.fromkeys(os.path.join(os.path.dirname(f), "conf.d") for f in d.config_files):
        if os.path.abspath(confd) not in read_dirs and _holds_yaml(confd):
            yield warning(Where(confd), "a conf.d directory beside the config file, not read: only what -c "
                          f"names is read (Debian's service passes it too); add `-c {confd}` after the "
                          "config file, or remove the directory", "conf-d")


def _holds_yaml(directory: str) -> bool:
    try:
        return any(name.endswith(".yaml") for name in os.listdir(directory))
    except OSError:
        return False


RULES = (worker_apps, main_files, unique_names, safe_names, listener_collisions, tcp_replication,
         no_daemonize, log_configs, server_name, media_listeners, listener_on_redis)
WARNINGS = (yml_worker_files, conf_d_not_read)
