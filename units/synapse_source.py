"""Synapse as the source of unit specs: its options, its config loaded and checked, reload plans
and upgrade plans. The `synsup` command (synsup/__main__.py) runs the generic CLI with it."""

from __future__ import annotations

import argparse
import os
import sys

from synsup.supervisor.cluster_config import ClusterConfig
from synsup.supervisor.plans import Action, UpgradePlan
from synsup.supervisor.source import Loaded, Placement, ProxyLayout, Routes
from synsup.supervisor.statedir import default_state_dir

from .check import check_deployment
from .check_cache import CheckCache
from .model import Deployment, Finding
from .placement import place
from .proxy_routes import proxy_layout, proxy_routes
from .reload_plan import plan, snapshot_of
from .route_source import RoutePatterns
from .routes import route_table
from .unit_specs import unit_specs
from .upgrade_prepare import prepare_upgrade, start_refusal
from .warning_codes import WARNING_CODES


class SynapseSource:
    module = "synsup"
    description = "Process supervisor for Synapse deployments with workers."

    def add_arguments(self, parser: argparse.ArgumentParser, command: str) -> None:
        if command == "upgrade":
            self._upgrade_arguments(parser)
            return
        group = parser.add_argument_group("configuration (as for synctl)")
        group.add_argument("-c", "--config", action="append", metavar="PATH", default=[],
                           help="shared config file, or a directory of *.yaml files; repeatable, "
                                "merged in order (default ./homeserver.yaml)")
        group.add_argument("configfile", nargs="?", metavar="CONFIGFILE", help="shared config file, as synctl takes it")
        group.add_argument("-a", "--workers", "--all-processes", dest="workers", metavar="DIR",
                           help="worker directory: one *.yaml file per process")
        group.add_argument("--python", metavar="PATH", default=sys.executable,
                           help="the interpreter that runs Synapse (default: this one)")
        group.add_argument("--ignore", action="append", default=[], choices=sorted(WARNING_CODES),
                           metavar="CODE", help="leave out the warnings of this code (shown as [CODE] after "
                                                "each warning); repeatable")
        if command in ("routes", "check", "start", "run"):
            group.add_argument("--routes", metavar="FILE", help="YAML, category: [worker, ...] (default: "
                               "workers with a client listener take sync and client reads, with a federation "
                               "listener the federation categories)")
        if command in ("start", "run"):
            group.add_argument("--external-redis", action="store_true",
                               help="Redis is run by someone else: only wait for it to answer PING")

    def _upgrade_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--python", metavar="PATH", help="the interpreter of the new Synapse's virtualenv "
                            "(default: the one the daemon was started with, upgraded in place)")
        parser.add_argument("--allow-downtime", action="store_true", help="when the old Synapse cannot run on the "
                            "migrated schema: stop the workers, migrate by starting main, start the rest")

    def config_paths(self, args: argparse.Namespace) -> list[str]:
        paths = list(args.config) + ([args.configfile] if args.configfile else [])
        return paths or ["homeserver.yaml"]

    def load(self, args: argparse.Namespace) -> Loaded:
        paths = self.config_paths(args)
        cache = CheckCache(getattr(args, "state_dir", None) or default_state_dir())
        result = check_deployment(paths, args.workers, args.python, ignore=getattr(args, "ignore", ()), cache=cache)
        specs, model = [], None
        if result.deployment is not None and result.ok:
            specs = unit_specs(result.deployment, external_redis=getattr(args, "external_redis", False),
                               synapse_version=result.synapse_version, synapse_file=result.synapse_file)
            model = snapshot_of(result.deployment, specs)
        errors = [*result.errors, *_route_mistakes(result.deployment, getattr(args, "routes", None))]
        watch = [os.path.abspath(p) for p in paths] + ([os.path.abspath(args.workers)] if args.workers else [])
        watch += sorted({f for s in specs for f in s.sighup_files})
        return Loaded(specs, errors, result.warnings, result.notes, watch, model,
                      {"synapse_version": result.synapse_version or ""})

    def plan(self, old: Loaded, new: Loaded) -> list[Action]:
        return plan(old.model, new.model)

    def upgrade(self, args: argparse.Namespace, current: Loaded, python: str | None,
                allow_downtime: bool) -> UpgradePlan:
        return prepare_upgrade(self.load, args, current, python, allow_downtime)

    def code_refusal(self, args: argparse.Namespace, loaded: Loaded, installed_version: str) -> str:
        """`synsup start` on another --python than the last upgrade installed: why not ("" to go on)."""
        return start_refusal(args.python, loaded, installed_version)

    def routes(self, args: argparse.Namespace) -> Routes:
        return proxy_routes(args, self.config_paths(args))

    def proxy_layout(self, args: argparse.Namespace, loaded: Loaded) -> ProxyLayout:
        sources = self.config_paths(args) + [p for p in (args.workers, getattr(args, "routes", None)) if p]
        return proxy_layout(args, loaded, sources)

    def placement(self, args: argparse.Namespace, loaded: Loaded, cluster: ClusterConfig) -> Placement:
        said = {getattr(f, "code", "") for f in loaded.warnings}  # the same warning from check's own rules
        return place(loaded.model.deployment, loaded.specs, cluster, [*getattr(args, "ignore", ()), *said])


def _route_mistakes(d: Deployment | None, routes_file: str | None) -> list[Finding]:
    """`check --routes FILE`: what `synsup routes` would refuse in that file (no patterns needed)."""
    if d is None or not routes_file:
        return []
    return route_table(d, RoutePatterns({}, ""), routes_file).errors
