"""cluster.yaml (`--cluster FILE`): the cluster's name, where its store (etcd) is, its nodes, and
which node runs which process. Read into frozen dataclasses; a mistake is one `ClusterConfigError`
line naming the file, the key (with its line) and the fix. Pure: no store, no Synapse knowledge
(where the config places processes by itself is the source's business: `Source.placement`)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .errors import SynsupError
from .loopback import is_loopback  # an address that means a different host on each node

DEFAULT_TTL = 30
TTL_RANGE = (2, 3600)  # etcd's own minimum lease TTL is about 2 s with its default timing
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
TOP_KEYS = ("name", "store", "nodes", "placement", "self_fence")
STORE_KEYS = ("endpoints", "prefix", "ttl", "tls", "username", "password")


class ClusterConfigError(SynsupError):
    """One bad key of cluster.yaml: `FILE:LINE: KEY: PROBLEM; FIX`."""


@dataclass(frozen=True)
class StoreTLS:
    ca: str | None = None
    cert: str | None = None
    key: str | None = None


@dataclass(frozen=True)
class StoreConfig:
    endpoints: tuple[str, ...]
    prefix: str  # every key of this cluster starts with it; ends with "/"
    ttl: int = DEFAULT_TTL
    tls: StoreTLS | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Node:
    name: str
    address: str


@dataclass(frozen=True)
class ClusterConfig:
    file: str
    name: str
    store: StoreConfig
    nodes: dict[str, Node]
    placement: dict[str, str]  # process (unit) name -> node name, as written
    lines: dict[str, int] = field(default_factory=dict, compare=False)  # "placement.main" -> its line
    self_fence: bool = False

    def line_of(self, key: str) -> int | None:
        return self.lines.get(key)

    def node_at(self, address: str) -> str | None:
        """The node whose address this is (an instance_map host, say), or None."""
        return next((n.name for n in self.nodes.values() if n.address == address), None)


class _Reader:
    """Reports a bad key of one file as `FILE:LINE: KEY: PROBLEM; FIX`."""

    def __init__(self, file: str, lines: dict[str, int]) -> None:
        self.file, self.lines = file, lines

    def fail(self, key: str, problem: str, line: int | None = None) -> ClusterConfigError:
        line = line or self.lines.get(key)
        place = f"{self.file}:{line}" if line else self.file
        return ClusterConfigError(f"{place}: {key}: {problem}")


def read_cluster_config(path: str) -> ClusterConfig:
    document, lines = _parse(path)
    r = _Reader(path, lines)
    if not isinstance(document, dict):
        raise r.fail("(top level)", "expected a mapping with name, store, nodes and placement")
    unknown = [k for k in document if k not in TOP_KEYS]
    if unknown:
        raise r.fail(str(unknown[0]), f"unknown key; the keys are {', '.join(TOP_KEYS)}")
    name = _name(r, "name", document.get("name"))
    nodes = _nodes(r, document.get("nodes"))
    return ClusterConfig(
        file=path, name=name, store=_store(r, document.get("store"), name, os.path.dirname(path)),
        nodes=nodes, placement=_placement(r, document.get("placement"), nodes), lines=lines,
        self_fence=_flag(r, "self_fence", document.get("self_fence", False)),
    )


def _parse(path: str) -> tuple[Any, dict[str, int]]:
    import yaml  # only with --cluster: the daemon of a source without YAML carries none
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ClusterConfigError(f"{path}: cannot read the cluster file: {e.strerror}; check --cluster") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        document = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        place = f"{path}:{mark.line + 1}" if mark else path
        raise ClusterConfigError(f"{place}: not valid YAML: {getattr(e, 'problem', None) or e}") from None
    lines: dict[str, int] = {}
    _key_lines(_Reader(path, lines), root, "", lines)
    return document, lines


def _key_lines(r: _Reader, node: Any, prefix: str, lines: dict[str, int]) -> None:
    """The line of every mapping key as a dotted path; a key written twice is an error (YAML
    would silently keep the last one: a process placed twice)."""
    import yaml
    if not isinstance(node, yaml.MappingNode):
        return
    for key_node, value_node in node.value:
        path = f"{prefix}{key_node.value}"
        if path in lines:
            raise r.fail(path, f"written twice (first on line {lines[path]}); keep one",
                         key_node.start_mark.line + 1)
        lines[path] = key_node.start_mark.line + 1
        _key_lines(r, value_node, path + ".", lines)


def _name(r: _Reader, key: str, value: Any) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise r.fail(key, f"{value!r} is not a name; write letters, digits, '.', '_' or '-' (at most 64)")
    return value


def _flag(r: _Reader, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise r.fail(key, f"{value!r} is not true or false")
    return value


def _nodes(r: _Reader, value: Any) -> dict[str, Node]:
    if not isinstance(value, dict) or not value:
        raise r.fail("nodes", "expected a mapping of node name to {address: HOST}, at least one node")
    nodes = {}
    for name, entry in value.items():
        key = f"nodes.{name}"
        _name(r, key, str(name))
        if not isinstance(entry, dict) or not isinstance(entry.get("address"), str) or not entry["address"]:
            raise r.fail(key, "expected {address: HOST}, the name or address the other nodes reach it by")
        nodes[str(name)] = Node(str(name), entry["address"])
    _addresses_distinct(r, nodes)
    return nodes


def _addresses_distinct(r: _Reader, nodes: dict[str, Node]) -> None:
    seen: dict[str, str] = {}
    for node in nodes.values():
        key = f"nodes.{node.name}.address"
        if len(nodes) > 1 and is_loopback(node.address):
            raise r.fail(key, f"{node.address} is this host only; write an address the other nodes reach")
        if node.address in seen:
            raise r.fail(key, f"{node.address} is node {seen[node.address]}'s address too; give each node its own")
        seen[node.address] = node.name


def _placement(r: _Reader, value: Any, nodes: dict[str, Node]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise r.fail("placement", "expected a mapping of process name to node name")
    for process, node in value.items():
        if str(node) not in nodes:
            raise r.fail(f"placement.{process}", f"no node named {node!r}; use one of "
                         f"{', '.join(nodes)} or add it under nodes")
    return {str(p): str(n) for p, n in value.items()}


def _store(r: _Reader, value: Any, name: str, base: str) -> StoreConfig:
    if not isinstance(value, dict):
        raise r.fail("store", "expected {endpoints: [http://HOST:2379, ...]} and optionally prefix, ttl, tls, "
                     "username, password")
    unknown = [k for k in value if k not in STORE_KEYS]
    if unknown:
        raise r.fail(f"store.{unknown[0]}", f"unknown key; the keys are {', '.join(STORE_KEYS)}")
    tls = _tls(r, value.get("tls"), base)
    return StoreConfig(
        endpoints=_endpoints(r, value.get("endpoints"), tls), prefix=_prefix(r, value.get("prefix"), name),
        ttl=_ttl(r, value.get("ttl", DEFAULT_TTL)), tls=tls, **_credentials(r, value),
    )


def _endpoints(r: _Reader, value: Any, tls: StoreTLS | None) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise r.fail("store.endpoints", "expected a list of etcd URLs, e.g. [http://10.0.0.1:2379]")
    if {urlsplit(str(u)).scheme for u in value} == {"http", "https"}:
        raise r.fail("store.endpoints", "mixes http:// and https://; use one scheme for every endpoint")
    for url in value:
        _endpoint(r, url, tls)
    return tuple(str(u).rstrip("/") for u in value)


def _endpoint(r: _Reader, url: Any, tls: StoreTLS | None) -> None:
    parts = urlsplit(str(url))
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None or parts.path not in ("", "/") \
            or parts.query or parts.fragment or parts.username:
        raise r.fail("store.endpoints", f"{url!r} is not an http(s)://HOST:PORT URL; write e.g. http://10.0.0.1:2379")
    if parts.scheme == "https" and tls is None:
        raise r.fail("store.endpoints", f"{url} is https but store.tls is not set; add store.tls.ca (the CA "
                     "that signed etcd's certificate), or use http://")
    if parts.scheme == "http" and tls is not None:
        raise r.fail("store.tls", f"is set but {url} is http; use https:// endpoints or remove store.tls")


def _tls(r: _Reader, value: Any, base: str) -> StoreTLS | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not value or any(k not in ("ca", "cert", "key") for k in value):
        raise r.fail("store.tls", "expected {ca: FILE, cert: FILE, key: FILE} (cert and key for client "
                     "certificate authentication, both or neither)")
    if ("cert" in value) != ("key" in value):
        raise r.fail("store.tls", "cert and key go together; give both or neither")
    files = {k: _readable(r, f"store.tls.{k}", v, base) for k, v in value.items()}
    return StoreTLS(**files)


def _readable(r: _Reader, key: str, value: Any, base: str) -> str:
    if not isinstance(value, str) or not value:
        raise r.fail(key, "expected a file path")
    path = os.path.join(base, value)
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise r.fail(key, f"{path} is not a readable file; check the path and its permissions")
    return path


def _prefix(r: _Reader, value: Any, name: str) -> str:
    if value is None:
        return f"/synsup/{name}/"
    if not isinstance(value, str) or not value.strip("/"):
        raise r.fail("store.prefix", f"{value!r} is not a key prefix; write e.g. /synsup/{name}/")
    return value.rstrip("/") + "/"


def _ttl(r: _Reader, value: Any) -> int:
    low, high = TTL_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise r.fail("store.ttl", f"{value!r} is not a whole number of seconds from {low} to {high}; the "
                     f"default is {DEFAULT_TTL}")
    return value


def _credentials(r: _Reader, value: dict[str, Any]) -> dict[str, str | None]:
    user, password = value.get("username"), value.get("password")
    if (user is None) != (password is None):
        raise r.fail("store.password" if user is None else "store.username", "username and password go "
                     "together; give both or neither")
    for key, given in (("username", user), ("password", password)):
        if given is not None and (not isinstance(given, str) or not given):
            raise r.fail(f"store.{key}", "expected a non-empty string")
    return {"username": user, "password": password}
