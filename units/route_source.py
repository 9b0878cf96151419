"""Where the endpoint patterns come from: the installed Synapse itself (its servlet registry,
through generate_workers_map, run with the deployment's `--python`), else the table in
units/route_table.py for the Synapse version it is valid for. Either way the endpoints that
Synapse cannot enumerate (media, SSO, admin, device lists) come from the documentation table."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

from .model import Deployment
from .route_table import ANY, BY_NAME, BY_SYNAPSE_NAME, DOCS_TABLE, TABLE_V166, TABLE_VALID_FOR

MARKER = "synsup-worker-routes"
TIME_LIMIT = 60.0
PROGRAM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "synapse_programs", "worker_routes.py")

Patterns = dict[str, tuple[tuple[str, str], ...]]  # category -> ((method, regex), ...)


@dataclass(frozen=True)
class RoutePatterns:
    patterns: Patterns
    origin: str  # said in the generated file's header


def patterns_of(d: Deployment) -> RoutePatterns:
    """The installed Synapse's patterns, else the table (saying why)."""
    reply = _ask_synapse(d)
    if "routes" in reply:
        version = str(reply.get("version", "")).split(" ")[0]
        return RoutePatterns(_with_docs(from_synapse(reply["routes"])),
                             f"Synapse {version} (its servlet registry, via generate_workers_map)")
    return RoutePatterns(_with_docs(dict(TABLE_V166)), f"synsup's table for Synapse {TABLE_VALID_FOR} "
                         f"(units/route_table.py; {d.python}: {reply.get('missing', 'no answer')})")


def from_synapse(routes: Iterable[list]) -> Patterns:
    """[method, regex, Synapse category] rows grouped by synsup category (uncategorised: main)."""
    grouped: dict[str, list[tuple[str, str]]] = {}
    for method, regex, synapse_category in routes:
        name = BY_SYNAPSE_NAME.get(synapse_category or "")
        if name:
            method = ANY if BY_NAME[name].stream else method  # the writer takes every method
            grouped.setdefault(name, []).append((method, regex))
    return {name: tuple(rows) for name, rows in grouped.items()}


def _with_docs(patterns: Patterns) -> Patterns:
    return {**patterns, **{name: rows for name, rows in DOCS_TABLE.items() if name not in patterns}}


def _job(d: Deployment) -> str:
    config = {"server_name": d.shared.get("server_name"), "report_stats": False,
              "database": {"name": "sqlite3", "args": {"database": ":memory:"}}}
    if isinstance(d.shared.get("experimental_features"), dict):  # they add endpoints
        config["experimental_features"] = dict(d.shared.get("experimental_features"))
    return json.dumps({"config": config})


def _ask_synapse(d: Deployment) -> dict:
    try:
        done = subprocess.run([d.python, PROGRAM], input=_job(d), capture_output=True, text=True,
                              timeout=TIME_LIMIT)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"missing": f"cannot run: {e}"}
    head, _, body = done.stdout.partition("\n")
    try:
        reply = json.loads(body) if head == MARKER else None
    except ValueError:
        reply = None
    return reply if isinstance(reply, dict) else {"missing": f"not a working Python (exit code {done.returncode})"}
