"""Synapse as the source of unit specs: its options, its config loaded and checked, reload plans
and upgrade plans. The `synsup` command (synsup/__main__.py) runs the generic CLI with it."""

from __future__ import annotations

import argparse
import os
import sys

from synsup.supervisor.plans import Action, UpgradePlan
from synsup.supervisor.source import Loaded
from synsup.supervisor.statedir import default_state_dir

from .check import check_deployment
from .check_cache import CheckCache
from .reload_plan import plan, snapshot_of
from .specs import unit_specs
from .upgrade_prepare import prepare_upgrade


class SynapseSource:
    module = "synsup"

    def add_arguments(self, parser: argparse.ArgumentParser, command: str) -> None:
        group = parser.add_argument_group("configuration (as for synctl)")
        group.add_argument("-c", "--config", action="append", metavar="PATH", default=[],
                           help="shared config file, or a directory of *.yaml files; repeatable, "
                                "merged in order (default ./homeserver.yaml)")
        group.add_argument("configfile", nargs="?", metavar="CONFIGFILE", help="shared config file, as synctl takes it")
        group.add_argument("-a", "--workers", "--all-processes", dest="workers", metavar="DIR",
                           help="worker directory: one *.yaml file per process")
        group.add_argument("--python", metavar="PATH", default=sys.executable,
                           help="the interpreter that runs Synapse (default: this one)")
        if command in ("start", "run"):
            group.add_argument("--external-redis", action="store_true",
                               help="Redis is run by someone else: only wait for it to answer PING")

    def config_paths(self, args: argparse.Namespace) -> list[str]:
        paths = list(args.config) + ([args.configfile] if args.configfile else [])
        return paths or ["homeserver.yaml"]

    def load(self, args: argparse.Namespace) -> Loaded:
        paths = self.config_paths(args)
        cache = CheckCache(getattr(args, "state_dir", None) or default_state_dir())
        result = check_deployment(paths, args.workers, args.python, cache=cache)
        specs, model = [], None
        if result.deployment is not None and result.ok:
            specs = unit_specs(result.deployment, external_redis=getattr(args, "external_redis", False),
                               synapse_version=result.synapse_version, synapse_file=result.synapse_file)
            model = snapshot_of(result.deployment, specs)
        watch = [os.path.abspath(p) for p in paths] + ([os.path.abspath(args.workers)] if args.workers else [])
        watch += sorted({f for s in specs for f in s.sighup_files})
        return Loaded(specs, result.errors, result.warnings, result.notes, watch, model,
                      {"synapse_version": result.synapse_version or ""})

    def plan(self, old: Loaded, new: Loaded) -> list[Action]:
        return plan(old.model, new.model)

    def upgrade(self, args: argparse.Namespace, current: Loaded, python: str | None,
                allow_downtime: bool) -> UpgradePlan:
        return prepare_upgrade(self.load, args, current, python, allow_downtime)

