"""What the CLI needs from the application layer: arguments in, unit specs and findings out."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .plans import Action, UpgradePlan
from .spec import UnitSpec

if TYPE_CHECKING:  # cluster.yaml is read only with --cluster (ipaddress, urllib.parse: 0.5 MB of RSS)
    from .cluster_config import ClusterConfig


class Finding(Protocol):
    def format(self) -> str: ...

    def as_json(self) -> dict[str, Any]: ...


@dataclass
class Loaded:
    specs: list[UnitSpec]
    errors: Sequence[Finding] = field(default_factory=list)
    warnings: Sequence[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    watch_paths: list[str] = field(default_factory=list)
    model: Any = None  # what the source needs to plan a reload from this load
    info: dict[str, str] = field(default_factory=dict)  # extra labels of synsup_info (e.g. synapse_version)


@dataclass
class Routes:
    """What `synsup routes` prints: the proxy configuration (with --diff: what changed), or the
    errors that stop it (each one line naming its file and line)."""

    text: str = ""
    errors: Sequence[Finding] = field(default_factory=list)


@dataclass(frozen=True)
class ProxyServer:
    """One server line of the proxy: unit `name` in `backend`, at `address` (HOST:PORT or
    unix@PATH, as HAProxy writes it); `backup` takes requests only when no other server can."""

    backend: str
    name: str
    address: str
    backup: bool = False


@dataclass
class ProxyLayout:
    """What `--proxy` keeps the proxy equal to (`synsup start --proxy`): every backend's servers,
    HAProxy's route map (category -> backend, in the map named `route_map`), the nginx routes
    file's text, the event persisters (while one is down, a drain is short), or the errors that stop it."""

    servers: list[ProxyServer] = field(default_factory=list)
    nginx: str = ""
    routes: dict[str, str] = field(default_factory=dict)
    route_map: str = ""
    persisters: list[str] = field(default_factory=list)  # units whose stop pauses event persistence
    errors: Sequence[Finding] = field(default_factory=list)


@dataclass
class Placement:
    """Which node runs which unit (`synsup check --cluster`): every node of cluster.yaml with its
    units in start order (an external unit, only probed, with each node whose units need it), or
    the errors that stop it."""

    units: dict[str, list[str]] = field(default_factory=dict)
    errors: Sequence[Finding] = field(default_factory=list)
    warnings: Sequence[Finding] = field(default_factory=list)


class Source(Protocol):
    """An application: its command-line options (for the config commands and for `upgrade`), its
    config loaded into unit specs, what a change of it requires, and how its code is upgraded."""

    module: str  # `python -m MODULE run ...` runs the daemon in the background
    description: str  # what `synsup --help` says synsup is, with this source

    def add_arguments(self, parser: argparse.ArgumentParser, command: str) -> None: ...

    def load(self, args: argparse.Namespace) -> Loaded: ...

    def plan(self, old: Loaded, new: Loaded) -> list[Action]: ...

    def code_refusal(self, args: argparse.Namespace, loaded: Loaded, installed_version: str) -> str:
        """Why starting `loaded` would run code older than `installed_version` (what the last
        upgrade installed) or than its data allows; "" when it may start."""
        ...

    def upgrade(self, args: argparse.Namespace, current: Loaded, python: str | None,
                allow_downtime: bool) -> UpgradePlan:
        """What switching to newly installed code takes (a plan with errors if it cannot be done)."""
        ...

    def routes(self, args: argparse.Namespace) -> Routes:
        """The reverse-proxy configuration for the deployment (`synsup routes`)."""
        ...

    def proxy_layout(self, args: argparse.Namespace, loaded: Loaded) -> ProxyLayout:
        """The servers (and the nginx file) the proxy needs for `loaded` (`start --proxy`)."""
        ...

    def placement(self, args: argparse.Namespace, loaded: Loaded, cluster: ClusterConfig) -> Placement:
        """Which node of `cluster` runs each unit of `loaded` (a load without errors): cluster.yaml's
        placement and whatever the application's config places by itself, checked."""
        ...
