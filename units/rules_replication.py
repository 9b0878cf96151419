"""Rules about replication: stream writers, instance_map, main's endpoint, Redis, database."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from synsup.supervisor.loopback import reach_host, same_host
from synsup.supervisor.spec import address

from .model import MAIN_ALIASES, MAIN_INSTANCE, WILDCARDS, Deployment, Finding, Listener, Process, error
from .roles import DUTY_OPTIONS, MAIN_WRITER_STREAMS, SINGLE_WRITER_STREAMS, STREAMS, as_names
from .yamldoc import Where, where


def replication_listeners(p: Process) -> list[Listener]:
    return [l for l in p.listeners if l.type == "http" and "replication" in l.resources]


def _host_matches(host: str, listener: Listener) -> bool:
    if set(listener.addresses) & WILDCARDS:
        return True
    return any(same_host(host, bound) for bound in listener.addresses)


def endpoint_matches(entry: dict, p: Process) -> bool:
    """Whether an instance_map-style {host, port} or {path} is one of p's replication listeners."""
    for listener in replication_listeners(p):
        if entry.get("path") is not None:
            if listener.path == str(entry["path"]):
                return True
        elif listener.port == entry.get("port") and _host_matches(str(entry.get("host", "localhost")), listener):
            return True
    return False


def _describe(entry: dict) -> str:
    return address(entry.get("path"), entry.get("host", "localhost"), entry.get("port"))


def stream_writers(d: Deployment) -> Iterator[Finding]:
    writers = d.shared.get("stream_writers")
    if writers is None:
        return
    if not isinstance(writers, dict):
        yield error(d.shared.where("stream_writers"), "`stream_writers` must be a mapping of stream name to writer(s)")
        return
    instance_map = d.shared.get("instance_map") or {}
    for stream, value in writers.items():
        at = where(writers, stream)
        if stream not in STREAMS:
            yield error(at, f"stream_writers: unknown stream {stream!r}; streams are: {', '.join(STREAMS)}")
            continue
        names = as_names(value)
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            yield error(at, f"stream_writers.{stream}: {', '.join(map(repr, twice))} listed twice; Synapse "
                        "shards by position, so list each writer once")
            names = list(dict.fromkeys(names))
        yield from _stream_writer_names(d, stream, names, at, instance_map)


def _stream_writer_names(d: Deployment, stream: str, names: list[str], at: Where, instance_map: Any
                         ) -> Iterator[Finding]:
    if stream in SINGLE_WRITER_STREAMS and len(names) > 1:
        yield error(at, f"stream_writers.{stream}: {len(names)} writers, but {stream} takes exactly one; keep one")
    if stream in MAIN_WRITER_STREAMS and MAIN_INSTANCE not in names:
        yield error(at, f"stream_writers.{stream} must list the main process (`{MAIN_INSTANCE}`), which Synapse "
                    f"needs among its writers; add `{MAIN_INSTANCE}`")
    for name in names:
        if name == "main":
            yield error(at, f"stream_writers.{stream}: the main process is `{MAIN_INSTANCE}` here, not `main` "
                        "(Synapse refuses `main` in stream_writers; `main` is its name only in instance_map); "
                        f"write `{MAIN_INSTANCE}`")
        else:
            yield from _writer(d, stream, name, at, instance_map)


def _writer(d: Deployment, stream: str, name: str, at: Where, instance_map: Any) -> Iterator[Finding]:
    p = d.by_instance(name)
    if p is None and d.workers_dir is None:
        return  # reported once by forgotten_workers_dir
    if p is None:
        yield error(at, f"stream_writers.{stream}: {name!r} is no process of this deployment; "
                    "add its worker file or fix the name")
        return
    if p.kind == "main":
        return
    if not (isinstance(instance_map, dict) and name in instance_map):
        yield error(at, f"stream_writers.{stream}: writer {name!r} is missing from `instance_map`; "
                    f"add `{name}: {{host: ..., port: ...}}` pointing at its replication listener")
    if not replication_listeners(p):
        yield error(p.at("worker_listeners"), f"{name}: writes the {stream} stream but has no http "
                    "listener with the `replication` resource; add one to `worker_listeners`")


def instance_map_entries(d: Deployment) -> Iterator[Finding]:
    instance_map = d.shared.get("instance_map")
    if instance_map is None:
        return
    if not isinstance(instance_map, dict):
        yield error(d.shared.where("instance_map"), "`instance_map` must be a mapping of instance name to {host, port}")
        return
    for name, entry in instance_map.items():
        at = where(instance_map, name)
        p = d.by_instance(str(name))
        if not isinstance(entry, dict):
            yield error(at, f"instance_map.{name} must be a mapping with `host` and `port` (or `path`)")
        elif p is not None and (p.kind == "worker" or d.workers) and not endpoint_matches(entry, p):
            yield error(at, f"instance_map.{name}: {_describe(entry)} matches no replication listener "
                        f"of {p.name}; point it at an http listener with the `replication` resource")


def _main_entry(d: Deployment) -> tuple[dict | None, Where]:
    instance_map = d.shared.get("instance_map")
    if isinstance(instance_map, dict) and isinstance(instance_map.get("main"), dict):
        return instance_map["main"], where(instance_map, "main")
    return None, d.shared.where("instance_map")


def _suggested_main_entry(d: Deployment) -> str:
    """instance_map.main as it should read, from main's actual replication listener."""
    for listener in replication_listeners(d.main):
        if listener.path:
            return f"`instance_map: {{main: {{path: {listener.path}}}}}`"
        host = reach_host(listener.addresses)
        return f"`instance_map: {{main: {{host: {host}, port: {listener.port}}}}}`"
    return ("an http listener with the `replication` resource to main's `listeners`, and "
            "`instance_map: {main: {host: 127.0.0.1, port: <that port>}}`")


def _uses_legacy_endpoint(w: Process) -> bool:
    return "worker_replication_host" in w.config or "worker_replication_http_port" in w.config


def main_named_master(d: Deployment) -> Iterator[Finding]:
    instance_map = d.shared.get("instance_map")
    if not isinstance(instance_map, dict) or "master" not in instance_map or "main" in instance_map:
        return
    if any(not _uses_legacy_endpoint(w) for w in d.workers):
        yield error(where(instance_map, "master"), "instance_map names the main process `master`, but "
                    "Synapse looks for `main` (\"Please include 'main' in the instance_map\"); rename "
                    "`master:` to `main:` (in stream_writers main stays `master`)")


def main_endpoint(d: Deployment) -> Iterator[Finding]:
    if not d.workers:
        return
    modern, modern_at = _main_entry(d)
    without = [w.name for w in d.workers if not _uses_legacy_endpoint(w)]
    instance_map = d.shared.get("instance_map")
    named_master = isinstance(instance_map, dict) and "master" in instance_map  # main_named_master says it
    if modern is None and without and not named_master:
        yield error(modern_at, f"no replication endpoint for the main process ({len(without)} worker(s) "
                    f"need one: {', '.join(without[:3])}{'...' if len(without) > 3 else ''}); add "
                    f"{_suggested_main_entry(d)} to the shared config")
    for w in d.workers:
        if _uses_legacy_endpoint(w):
            yield from _legacy_endpoint(d, w, modern)
    if modern is not None and not endpoint_matches(modern, d.main):
        yield error(modern_at, f"instance_map.main: {_describe(modern)} matches no replication listener "
                    "on main; add an http listener with the `replication` resource to `listeners`")


def _legacy_endpoint(d: Deployment, w: Process, modern: dict | None) -> Iterator[Finding]:
    host, port = w.config.get("worker_replication_host"), w.config.get("worker_replication_http_port")
    legacy = {"host": host if host is not None else "localhost", "port": port}
    at = w.at("worker_replication_http_port" if port is not None else "worker_replication_host")
    if modern is not None and _describe(modern) != _describe(legacy):
        yield error(at, f"{w.name}: worker_replication_host/port say {_describe(legacy)} but "
                    f"instance_map.main says {_describe(modern)}; remove the worker_replication_* keys")
    elif not endpoint_matches(legacy, d.main):
        yield error(at, f"{w.name}: main's replication endpoint {_describe(legacy)} matches no "
                    "replication listener on main; add an http listener with the `replication` "
                    "resource to main's `listeners`")


def redis_and_database(d: Deployment) -> Iterator[Finding]:
    if not d.workers:
        return
    if d.redis is None:
        yield error(d.shared.where("redis"), "workers need Redis, but it is not enabled; add "
                    "`redis: {enabled: true}` to the shared config")
    database = d.shared.get("database")
    name = database.get("name") if isinstance(database, dict) else None
    if name in (None, "sqlite3"):
        yield error(d.shared.where("database"), "workers need PostgreSQL, but the database is SQLite; "
                    "set `database: {name: psycopg2, args: ...}`")


def redis_password_file(d: Deployment) -> Iterator[Finding]:
    section = d.shared.get("redis")
    path = section.get("password_path") if isinstance(section, dict) else None
    if path is not None and not os.path.isfile(str(path)):
        yield error(where(section, "password_path"), f"redis.password_path names {path!r}, which does not "
                    "exist; create it or fix the path")


def _named_workers(d: Deployment) -> Iterator[tuple[Where, str, str]]:
    """(where, option, name) for every name a writer list or duty option gives, main excepted."""
    writers = d.shared.get("stream_writers")
    for stream, value in (writers.items() if isinstance(writers, dict) else []):
        for name in as_names(value):
            yield where(writers, stream), f"stream_writers.{stream}", name
    for option in DUTY_OPTIONS:
        for name in as_names(d.shared.get(option)):
            yield d.shared.where(option), option, name


def forgotten_workers_dir(d: Deployment) -> Iterator[Finding]:
    if d.workers_dir is not None:
        return
    for at, option, name in _named_workers(d):
        if name not in MAIN_ALIASES:
            yield error(at, f"`{option}` names the worker {name!r}, but no worker directory was given: "
                        "did you forget -a DIR? (without -a only the main process runs)")
            return


RULES = (stream_writers, instance_map_entries, main_named_master, main_endpoint, redis_and_database,
         redis_password_file, forgotten_workers_dir)
