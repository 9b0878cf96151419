"""The deployment as synsup sees it: frozen dataclasses, no behaviour."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from synsup.supervisor.spec import address

from .warning_codes import WARNING_CODES
from .yamldoc import Where, YamlMap, where

MAIN_INSTANCE = "master"  # Synapse's own name for the main process
MAIN_ALIASES = frozenset({"master", "main"})  # names that mean main in writer lists
HOMESERVER_APP = "synapse.app.homeserver"
GENERIC_WORKER_APP = "synapse.app.generic_worker"
WORKER_APPS = tuple(
    f"synapse.app.{name}"
    for name in (
        "generic_worker appservice client_reader event_creator federation_reader "
        "federation_sender frontend_proxy media_repository pusher synchrotron user_dir"
    ).split()
)
WILDCARDS = frozenset({"0.0.0.0", "::"})
DEFAULT_BIND = ("::", "0.0.0.0")


@dataclass(frozen=True)
class Finding:
    severity: str  # "error" | "warning"
    file: str
    line: int | None
    message: str
    code: str = ""  # warnings: a WARNING_CODES key (`--ignore CODE`); errors have none

    def format(self) -> str:
        place = f"{self.file}:{self.line}" if self.line else self.file
        return f"{place}: {self.severity}: {self.message}" + (f" [{self.code}]" if self.code else "")

    def as_json(self) -> dict[str, Any]:
        found = {"file": self.file, "line": self.line, "message": self.message}
        return found | ({"code": self.code} if self.code else {})


def error(at: Where, message: str) -> Finding:
    return Finding("error", at.file, at.line, message)


def warning(at: Where, message: str, code: str) -> Finding:
    assert code in WARNING_CODES, f"unregistered warning code {code!r}"
    return Finding("warning", at.file, at.line, message, code)


class LayeredConfig:
    """Config files merged by top-level key, later files winning, as Synapse does."""

    def __init__(self, layers: tuple[YamlMap, ...]) -> None:
        self.layers = layers

    def _layer_with(self, key: str) -> YamlMap | None:
        for layer in reversed(self.layers):
            if key in layer:
                return layer
        return None

    def get(self, key: str, default: Any = None) -> Any:
        layer = self._layer_with(key)
        return layer[key] if layer is not None else default

    def __contains__(self, key: str) -> bool:
        return self._layer_with(key) is not None

    def where(self, key: str) -> Where:
        layer = self._layer_with(key)
        if layer is not None:
            return where(layer, key)
        return where(self.layers[-1]) if self.layers else Where("")

    def overlay(self, top: YamlMap) -> LayeredConfig:
        return LayeredConfig(self.layers + (top,))

    def as_dict(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for layer in self.layers:
            merged.update(layer)
        return merged


@dataclass(frozen=True)
class Listener:
    type: str
    port: int | None
    addresses: tuple[str, ...]
    path: str | None
    resources: frozenset[str]
    tls: bool
    at: Where

    def describe(self) -> str:
        place = address(self.path, "/".join(self.addresses), self.port)
        names = ",".join(sorted(self.resources))
        return f"{self.type} {place}" + (f" [{names}]" if names else "")

    def endpoints(self) -> Iterator[tuple[str, Any]]:
        """Where this listener binds: ("unix", path) or (address, port)."""
        if self.path:
            yield ("unix", self.path)
        else:
            for address in self.addresses:
                yield (address, self.port)


@dataclass(frozen=True)
class Redis:
    host: str
    port: int
    path: str | None
    password: str | None
    use_tls: bool
    at: Where


@dataclass(frozen=True, eq=False)
class Process:
    name: str  # unit name: "main" or the worker's instance name
    instance: str  # Synapse's instance name ("master" for main)
    kind: str  # "main" | "worker"
    app: str
    file: str | None  # the worker file, None for main
    config: LayeredConfig
    listeners: tuple[Listener, ...]
    streams: tuple[str, ...] = ()
    duties: tuple[str, ...] = ()

    @property
    def own(self) -> YamlMap:
        """The process's own file (the worker file), or the last shared file."""
        return self.config.layers[-1]

    def at(self, key: str | None = None) -> Where:
        return self.config.where(key) if key else where(self.own)


@dataclass(frozen=True, eq=False)
class Deployment:
    config_files: tuple[str, ...]
    shared: LayeredConfig
    main: Process
    workers: tuple[Process, ...]
    redis: Redis | None
    python: str
    workers_dir: str | None = None
    main_file: YamlMap | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def processes(self) -> tuple[Process, ...]:
        return (self.main,) + self.workers

    def by_instance(self, name: str) -> Process | None:
        if name in MAIN_ALIASES:
            return self.main
        return next((w for w in self.workers if w.instance == name), None)
