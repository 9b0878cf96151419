"""Rules about replication: stream writers, instance_map, main's endpoint, Redis, database."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from synsup.supervisor.spec import address

from .model import WILDCARDS, Deployment, Finding, Listener, Process, error
from .roles import INSTANCE_MAP_STREAMS, SINGLE_WRITER_STREAMS, STREAMS, as_names
from .yamldoc import Where, where

LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def replication_listeners(p: Process) -> list[Listener]:
    return [l for l in p.listeners if l.type == "http" and "replication" in l.resources]


def _host_matches(host: str, listener: Listener) -> bool:
    addresses = set(listener.addresses)
    if addresses & WILDCARDS or host in addresses:
        return True
    return host in LOOPBACK and bool(addresses & LOOPBACK)


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
        if stream in SINGLE_WRITER_STREAMS and len(names) > 1:
            yield error(at, f"stream_writers.{stream}: {len(names)} writers, but {stream} takes exactly one; keep one")
        for name in names:
            yield from _writer(d, stream, name, at, instance_map)


def _writer(d: Deployment, stream: str, name: str, at: Where, instance_map: Any) -> Iterator[Finding]:
    p = d.by_instance(name)
    if p is None:
        yield error(at, f"stream_writers.{stream}: {name!r} is no process of this deployment; "
                    "add its worker file or fix the name")
        return
    if p.kind == "main":
        return
    if stream in INSTANCE_MAP_STREAMS and not (isinstance(instance_map, dict) and name in instance_map):
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
    if isinstance(instance_map, dict):
        for alias in ("main", "master"):
            if isinstance(instance_map.get(alias), dict):
                return instance_map[alias], where(instance_map, alias)
    return None, d.shared.where("instance_map")


def main_endpoint(d: Deployment) -> Iterator[Finding]:
    if not d.workers:
        return
    modern, modern_at = _main_entry(d)
    for w in d.workers:
        host, port = w.config.get("worker_replication_host"), w.config.get("worker_replication_http_port")
        if host is None and port is None:
            if modern is None:
                yield error(w.at(), f"{w.name}: no replication endpoint for the main process; add "
                            "`instance_map: {main: {host: 127.0.0.1, port: <main's replication port>}}` "
                            "to the shared config")
            continue
        legacy = {"host": host if host is not None else "localhost", "port": port}
        at = w.at("worker_replication_http_port" if port is not None else "worker_replication_host")
        if modern is not None and _describe(modern) != _describe(legacy):
            yield error(at, f"{w.name}: worker_replication_host/port say {_describe(legacy)} but "
                        f"instance_map.main says {_describe(modern)}; remove the worker_replication_* keys")
        elif not endpoint_matches(legacy, d.main):
            yield error(at, f"{w.name}: main's replication endpoint {_describe(legacy)} matches no "
                        "replication listener on main; add an http listener with the `replication` "
                        "resource to main's `listeners`")
    if modern is not None and not endpoint_matches(modern, d.main):
        yield error(modern_at, f"instance_map.main: {_describe(modern)} matches no replication listener "
                    "on main; add an http listener with the `replication` resource to `listeners`")


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


RULES = (stream_writers, instance_map_entries, main_endpoint, redis_and_database, redis_password_file)
