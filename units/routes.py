"""The route table of a deployment: each category's patterns, the processes that serve it and
how requests are balanced between them; everything no category takes goes to main.

Stream categories go to their stream's writers (`stream_writers`, main when none); the others to
the workers a routes file (`--routes FILE`, YAML `category: [worker, ...]`) names, or without
one: every worker with a `client` listener takes sync and client reads, every worker with a
`federation` listener the federation categories, every worker with a `media` listener media."""

from __future__ import annotations

from dataclasses import dataclass, field

from .model import Deployment, Finding, Listener, Process, error
from .roles import as_names, writers_of
from .route_source import RoutePatterns
from .route_table import ASSIGNABLE, BY_NAME, CATEGORIES, DEFAULT_CLIENT, DEFAULT_FEDERATION
from .unit_specs import probe_for
from .yamldoc import ConfigFileError, Where, YamlList, YamlMap, load_mapping, where

NO_MAIN_LISTENER = "main has no http listener with the client resource; add one: the proxy sends it what no worker takes"


@dataclass(frozen=True)
class Server:
    name: str  # the unit
    host: str | None = None
    port: int | None = None
    path: str | None = None  # a UNIX socket


@dataclass(frozen=True)
class Route:
    category: str
    balance: str  # route_table.Category.balance
    servers: tuple[Server, ...]
    patterns: tuple[tuple[str, str], ...]  # (method or "*", regex)
    backup: Server | None = None  # main, for what any process can serve


@dataclass
class RouteTable:
    main: Server  # everything no route takes
    main_federation: Server | None = None  # main's federation listener, where it is another one
    routes: list[Route] = field(default_factory=list)
    patterns: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)  # every category's, routed or not
    origin: str = ""
    errors: list[Finding] = field(default_factory=list)


def server_for(p: Process, resource: str) -> Server | None:
    listener = next((l for l in p.listeners if l.type == "http" and resource in l.resources), None)
    return _server(p.name, listener) if listener else None


def _server(name: str, listener: Listener) -> Server | None:
    probe = probe_for(listener)
    return Server(name, probe.host, probe.port, probe.path) if probe else None


def route_table(d: Deployment, patterns: RoutePatterns, routes_file: str | None = None) -> RouteTable:
    main = server_for(d.main, "client")
    if main is None:
        return RouteTable(Server("main"), errors=[error(d.main.at("listeners"), NO_MAIN_LISTENER)])
    table = RouteTable(main, _main_federation(d, main), patterns=dict(patterns.patterns), origin=patterns.origin)
    assigned = _assigned(d, routes_file, table.errors)
    for category in CATEGORIES:
        rows = patterns.patterns.get(category.name, ())
        servers = _writers(d, category.stream, table.errors) if category.stream else assigned.get(category.name, ())
        if rows and servers:
            backup = None if category.stream else server_for(d.main, category.resource)
            table.routes.append(Route(category.name, category.balance, _balanced(category.name, servers), rows,
                                      None if backup in servers else backup))
    return table


def _balanced(category: str, servers: tuple[Server, ...]) -> tuple[Server, ...]:
    return servers[:1] if BY_NAME[category].balance == "single" else servers


def _main_federation(d: Deployment, main: Server) -> Server | None:
    federation = server_for(d.main, "federation")
    return federation if federation and federation != main else None


def _writers(d: Deployment, stream: str, errors: list[Finding]) -> tuple[Server, ...]:
    names = writers_of(d.shared, stream) or ["main"]
    servers = []
    for name in names:
        process = d.by_instance(name)
        server = server_for(process, "client") if process else None
        if process and server is None:
            errors.append(error(d.shared.where("stream_writers"), f"{stream} writer {name} has no http listener "
                                f"with the client resource; add one to {process.file or 'its config'} (the proxy "
                                f"sends the {stream} endpoints to it)"))
        servers += [server] if server else []
    return tuple(servers)


def _assigned(d: Deployment, routes_file: str | None, errors: list[Finding]) -> dict[str, tuple[Server, ...]]:
    if routes_file is None:
        return default_assignment(d)
    assigned = {"media": default_assignment(d)["media"]}
    try:
        document = load_mapping(routes_file)
    except ConfigFileError as e:
        errors.append(Finding("error", e.file, e.line, e.message))
        return assigned
    for key, value in document.items():
        servers = _category_servers(d, document, key, value, errors)
        if servers is not None:
            assigned[key] = servers
    return assigned


def default_assignment(d: Deployment) -> dict[str, tuple[Server, ...]]:
    def serving(resource: str) -> tuple[Server, ...]:
        return tuple(s for w in d.workers if (s := server_for(w, resource)))

    client, federation = serving("client"), serving("federation")
    return ({c: client for c in DEFAULT_CLIENT} | {c: federation for c in DEFAULT_FEDERATION}
            | {"media": serving("media")})


def _category_servers(d: Deployment, document: YamlMap, key: object, value: object,
                      errors: list[Finding]) -> tuple[Server, ...] | None:
    at = where(document, key)
    if key not in ASSIGNABLE:
        errors.append(error(at, _unknown_category(key)))
        return None
    names = as_names(value)
    if not names or not all(isinstance(n, str) for n in (value if isinstance(value, list) else [value])):
        errors.append(error(at, f"{key}: expected a worker name or a list of worker names"))
        return None
    found = [_named_server(d, str(key), name, _item_at(value, i, at), errors) for i, name in enumerate(names)]
    return tuple(s for s in found if s)


def _unknown_category(key: object) -> str:
    stream = BY_NAME.get(str(key))
    if stream is not None:
        return f"{key} is routed to the {stream.stream} stream's writers: set stream_writers.{stream.stream} instead"
    return f"unknown category {key!r}; use one of: {', '.join(ASSIGNABLE)}"


def _item_at(value: object, index: int, at: Where) -> Where:
    return where(value, index) if isinstance(value, YamlList) else at


def _named_server(d: Deployment, category: str, name: str, at: Where, errors: list[Finding]) -> Server | None:
    process = d.by_instance(name) or next((w for w in d.workers if w.name == name), None)
    if process is None:
        known = ", ".join(["main"] + [w.instance for w in d.workers])
        errors.append(error(at, f"{category}: no process named {name!r}; use one of: {known}"))
        return None
    resource = BY_NAME[category].resource
    server = server_for(process, resource)
    if server is None:
        errors.append(error(at, f"{category}: {name} has no http listener with the {resource} resource; "
                                f"add one to {process.file or 'its config'} or route {category} elsewhere"))
    return server
