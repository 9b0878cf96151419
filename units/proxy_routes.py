"""`synsup routes`: the deployment's config read and checked, its route table built from the
installed Synapse's patterns, printed for HAProxy or nginx, or compared with a previous file."""

from __future__ import annotations

import argparse

from synsup.supervisor.source import Loaded, ProxyLayout, ProxyServer, Routes

from .check import check_deployment
from .route_diff import read_previous, route_changes, routes_in
from .route_render import ROUTE_MAP, address_of, backends, haproxy, nginx, route_map, summary
from .route_source import patterns_of
from .routes import RouteTable, route_table


def proxy_routes(args: argparse.Namespace, config_paths: list[str]) -> Routes:
    checked = check_deployment(config_paths, args.workers, args.python, read_version=False)
    if checked.deployment is None or checked.errors:
        return Routes(errors=checked.errors)
    table = route_table(checked.deployment, patterns_of(checked.deployment), args.routes)
    if table.errors:
        return Routes(errors=table.errors)
    if args.diff:
        return _diff(table, args.diff)
    sources = config_paths + ([args.workers] if args.workers else []) + ([args.routes] if args.routes else [])
    if args.format == "nginx":
        return Routes(nginx(table, args.listen, sources))
    return Routes(haproxy(table, args.listen, args.admin_socket, sources))


def _diff(table: RouteTable, previous_file: str) -> Routes:
    previous, problem = read_previous(previous_file)
    if problem:
        return Routes(errors=[problem])
    changes = route_changes(previous, routes_in("\n".join(summary(table))))
    return Routes("\n".join(changes) + "\n" if changes else f"no route changed since {previous_file}\n")


def proxy_layout(args: argparse.Namespace, loaded: Loaded, sources: list[str]) -> ProxyLayout:
    """What `start --proxy` keeps the proxy equal to: each backend's servers named after their
    units, HAProxy's route map, and the nginx file (listening on --proxy-listen)."""
    deployment = loaded.model.deployment
    table = route_table(deployment, patterns_of(deployment), getattr(args, "routes", None))
    if table.errors:
        return ProxyLayout(errors=table.errors)
    servers = [ProxyServer(backend, s.name, address_of(s, "unix@"), s is backup)
               for backend, _, listed, backup in backends(table) for s in (*listed, *([backup] if backup else []))]
    persisters = [p.name for p in deployment.processes if "events" in p.streams and p.name != "main"]
    return ProxyLayout(servers, nginx(table, getattr(args, "proxy_listen", "127.0.0.1:8080"), sources),
                       route_map(table), ROUTE_MAP, persisters)
