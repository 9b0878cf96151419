"""Read the shared config and the worker directory into a Deployment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from .model import (
    DEFAULT_BIND,
    HOMESERVER_APP,
    MAIN_INSTANCE,
    Deployment,
    Finding,
    LayeredConfig,
    Listener,
    Process,
    Redis,
    error,
)
from .roles import assign_roles
from .yamldoc import ConfigFileError, Where, YamlMap, load_mapping, where, yaml_files_in


@dataclass
class LoadResult:
    deployment: Deployment | None
    findings: list[Finding] = field(default_factory=list)


def _file_error(e: ConfigFileError) -> Finding:
    return error(Where(e.file, e.line), e.message)


def read_shared(paths: list[str], findings: list[Finding]) -> list[YamlMap]:
    """Each -c path: a file, or a directory of *.yaml files read in sorted order."""
    layers: list[YamlMap] = []
    for path in paths:
        try:
            files = yaml_files_in(path) if os.path.isdir(path) else [path]
            if not files:
                findings.append(error(Where(path), "the directory holds no *.yaml file"))
            for file in files:
                layers.append(load_mapping(file))
        except ConfigFileError as e:
            findings.append(_file_error(e))
    return layers


def read_worker_files(directory: str, findings: list[Finding]) -> list[YamlMap]:
    try:
        files = yaml_files_in(directory)
    except ConfigFileError as e:
        findings.append(_file_error(e))
        return []
    docs = []
    for file in files:
        try:
            docs.append(load_mapping(file))
        except ConfigFileError as e:
            findings.append(_file_error(e))
    if not files:
        findings.append(
            error(Where(directory), "the worker directory holds no *.yaml worker file; "
                  "add one file per worker or leave out -a")
        )
    return docs


def parse_listeners(items: Any, at: Where, findings: list[Finding]) -> tuple[Listener, ...]:
    if items is None:
        return ()
    if not isinstance(items, list):
        findings.append(error(at, "listeners must be a list of listener mappings"))
        return ()
    result = []
    for index, item in enumerate(items):
        spot = where(items, index)
        listener = _parse_listener(item, spot, findings)
        if listener is not None:
            result.append(listener)
    return tuple(result)


def _parse_listener(item: Any, at: Where, findings: list[Finding]) -> Listener | None:
    if not isinstance(item, dict):
        findings.append(error(at, "a listener must be a mapping with `port` (or `path`) and `type`"))
        return None
    port, path = item.get("port"), item.get("path")
    if path is None and (not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536):
        findings.append(error(at, f"listener port {port!r} is not a port number (1-65535); "
                              "set `port:` or a UNIX socket `path:`"))
        return None
    addresses = item.get("bind_addresses")
    if addresses is None and item.get("bind_address") is not None:
        addresses = [item.get("bind_address")]
    addresses = tuple(str(a) for a in addresses) if isinstance(addresses, list) else DEFAULT_BIND
    return Listener(
        type=str(item.get("type", "http")),
        port=port if path is None else None,
        addresses=addresses,
        path=str(path) if path is not None else None,
        resources=frozenset(_resource_names(item.get("resources"))),
        tls=bool(item.get("tls", False)),
        at=at,
    )


def _resource_names(resources: Any) -> list[str]:
    names: list[str] = []
    for resource in resources if isinstance(resources, list) else []:
        if isinstance(resource, dict) and isinstance(resource.get("names"), list):
            names.extend(str(n) for n in resource["names"])
    return names


def parse_redis(shared: LayeredConfig) -> Redis | None:
    section = shared.get("redis")
    if not isinstance(section, dict) or not section.get("enabled", False):
        return None
    password = section.get("password")
    password_path = section.get("password_path")
    if password is None and password_path:
        try:
            with open(str(password_path), encoding="utf-8") as f:
                password = f.read().strip()
        except OSError:
            password = None  # reported by the redis_password_file rule
    return Redis(
        host=str(section.get("host", "localhost")),
        port=int(section.get("port", 6379)) if isinstance(section.get("port", 6379), int) else 6379,
        path=str(section["path"]) if section.get("path") else None,
        password=str(password) if password is not None else None,
        use_tls=bool(section.get("use_tls", False)),
        at=shared.where("redis"),
    )


def _main_process(shared: LayeredConfig, main_file: YamlMap | None, findings: list[Finding]) -> Process:
    config = shared.overlay(main_file) if main_file is not None else shared
    listeners = parse_listeners(shared.get("listeners"), shared.where("listeners"), findings)
    return Process("main", MAIN_INSTANCE, "main", HOMESERVER_APP, None, config, listeners)


def _worker_process(shared: LayeredConfig, doc: YamlMap, findings: list[Finding]) -> Process | None:
    app = doc.get("worker_app")
    if not isinstance(app, str) or not app:
        return None  # reported by the worker_app rule
    name = doc.get("worker_name") or app
    config = shared.overlay(doc)
    listeners = parse_listeners(config.get("worker_listeners"), config.where("worker_listeners"), findings)
    return Process(str(name), str(name), "worker", app, doc.file, config, listeners)


def load_deployment(config_paths: list[str], workers_dir: str | None, python: str) -> LoadResult:
    findings: list[Finding] = []
    layers = read_shared(config_paths, findings)
    docs = read_worker_files(workers_dir, findings) if workers_dir else []
    if not layers:
        return LoadResult(None, findings)
    shared = LayeredConfig(tuple(layers))
    mains = [d for d in docs if d.get("worker_app") == HOMESERVER_APP]
    worker_docs = [d for d in docs if d.get("worker_app") != HOMESERVER_APP]
    if mains and not worker_docs:
        findings.append(error(Where(workers_dir or ""), "the worker directory holds only the main process; "
                              "add the worker files, or leave out -a to run main alone"))
    main = _main_process(shared, mains[0] if mains else None, findings)
    workers = tuple(p for d in worker_docs if (p := _worker_process(shared, d, findings)))
    deployment = Deployment(
        config_files=tuple(layer.file for layer in layers),
        shared=shared,
        main=main,
        workers=workers,
        redis=parse_redis(shared),
        python=python,
        workers_dir=workers_dir,
        main_file=mains[0] if mains else None,
        extra={"main_files": mains, "worker_docs": worker_docs},
    )
    return LoadResult(assign_roles(deployment), findings)
