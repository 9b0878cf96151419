"""The synsup daemon over N benchmark units: `python daemon.py run --state-dir D --bench-units N [--ports P,...]`."""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

from bench_units import unit_spec  # noqa: E402  (not bench: the harness is not measured)

from synsup.supervisor.cli.main import main  # noqa: E402
from synsup.supervisor.errors import SynsupError  # noqa: E402
from synsup.supervisor.plans import UpgradePlan  # noqa: E402
from synsup.supervisor.source import Loaded, Placement, Routes  # noqa: E402


class BenchSource:
    module = "daemon"
    description = "synsup over benchmark units."

    def add_arguments(self, parser: argparse.ArgumentParser, command: str) -> None:
        parser.add_argument("--bench-units", type=int, default=500,
                            help="how many units (not --units: `start UNIT...` has that)")
        parser.add_argument("--ports", default="", help="comma-separated: one HTTP port per unit, probed")

    def load(self, args: argparse.Namespace) -> Loaded:
        ports = [int(p) for p in args.ports.split(",") if p] or [0] * args.bench_units
        return Loaded([unit_spec(f"u{i}", port=ports[i]) for i in range(args.bench_units)])

    def plan(self, old: Loaded, new: Loaded) -> list:
        return []

    def code_refusal(self, args: argparse.Namespace, loaded: Loaded, installed_version: str) -> str:
        return ""

    def upgrade(self, args: argparse.Namespace, current: Loaded, python: str | None,
                allow_downtime: bool) -> UpgradePlan:
        return UpgradePlan(errors=["benchmark units have no code to upgrade"])

    def routes(self, args: argparse.Namespace) -> Routes:
        raise SynsupError("benchmark units serve no HTTP routes")

    def proxy_layout(self, args: argparse.Namespace, loaded: Loaded) -> object:
        raise SynsupError("benchmark units serve no HTTP routes")

    def placement(self, args: argparse.Namespace, loaded: Loaded, cluster: object) -> Placement:
        raise SynsupError("benchmark units run on one host")


if __name__ == "__main__":
    sys.exit(main(BenchSource()))
