"""How each process's peers reach it for replication, as a check synsup makes at run time.

Synapse's processes send their replication requests (a login through a worker, an event sent
to a persister, a stream's catch-up) to the address `instance_map` gives for the target, with
`Authorization: Bearer <worker_replication_secret>`. A wrong address, one another process
answers, or a secret the target does not share make every such request fail while every
process answers its own /health. synsup makes one of those requests itself, as a peer would:
`GET /_synapse/replication/get_repl_stream_updates/typing/<txn>?from_token=0&upto_token=0`,
the one replication endpoint every process serves for GET (synapse/replication/http/streams.py)
and that costs nothing (equal tokens: no database read). Synapse answers 200 once the
Authorization check passes (synapse/replication/http/_base.py `_check_auth`), 500 ("Invalid
Authorization header" in its log) when it does not, and 404 on a listener without the
replication resource."""

from __future__ import annotations

from typing import Any

from synsup.supervisor.spec import HttpProbe, PeerCheck, address

from .model import Deployment, Process
from .rules_replication import replication_listeners

REPLICATION_CHECK_PATH = "/_synapse/replication/get_repl_stream_updates/typing/synsup?from_token=0&upto_token=0"


def replication_checks(d: Deployment, p: Process) -> tuple[PeerCheck, ...]:
    """A check of each `instance_map` entry that names `p` (for main in the v1.66 dialect, of
    each worker's `worker_replication_host`/`_http_port`), with the deployment's secret."""
    secret = replication_secret(d)
    if not d.workers or secret is False:
        return ()  # nobody replicates; or a secret file synsup cannot read: Synapse refuses to start anyway
    instance_map = d.shared.get("instance_map")
    entries = dict(instance_map) if isinstance(instance_map, dict) else {}
    routes = {f"instance_map.{name}": entry for name, entry in entries.items()
              if isinstance(entry, dict) and d.by_instance(str(name)) is p and _probe_target(entry)}
    if p is d.main and not any(d.by_instance(str(name)) is p for name in entries):
        routes.update(_legacy_routes(d))
    return tuple(_check(route, entry, p, secret) for route, entry in routes.items())


def _legacy_routes(d: Deployment) -> dict[str, dict]:
    """Where the v1.66 dialect's workers reach main: one check per distinct address."""
    routes: dict[str, dict] = {}
    for w in d.workers:
        entry = {"host": w.config.get("worker_replication_host"), "port": w.config.get("worker_replication_http_port"),
                 "tls": w.config.get("worker_replication_http_tls")}
        if _probe_target(entry) and entry not in routes.values():
            routes[f"{w.name}'s worker_replication_host/_http_port"] = entry
    return routes


def replication_secret(d: Deployment) -> str | None | bool:
    """The secret every process sends: inline, or read from worker_replication_secret_path
    (stripped, as Synapse reads it); None without one, False when the file cannot be read."""
    inline = d.shared.get("worker_replication_secret")
    if inline:
        return str(inline)
    path = d.shared.get("worker_replication_secret_path")
    if not path:
        return None
    try:
        with open(str(path), encoding="ascii") as f:
            return f.read().strip() or None
    except (OSError, UnicodeDecodeError):
        return False


def _probe_target(entry: dict) -> bool:
    return bool(entry.get("path")) or (entry.get("host") is not None and isinstance(entry.get("port"), int))


def _check(route: str, entry: dict, p: Process, secret: Any) -> PeerCheck:
    headers = (("Authorization", f"Bearer {secret}"),) if secret else ()
    path = str(entry["path"]) if entry.get("path") else None
    probe = HttpProbe(host=None if path else str(entry["host"]), port=None if path else int(entry["port"]),
                      path=path, url_path=REPLICATION_CHECK_PATH, tls=bool(entry.get("tls")), headers=headers)
    return PeerCheck(probe=probe, route=route, advice=_advice(route, p))


def _advice(route: str, p: Process) -> tuple[tuple[str, str], ...]:
    listeners = replication_listeners(p)
    where = ", ".join(address(l.path, "/".join(l.addresses), l.port) for l in listeners) or "none configured"
    point = f"point {route} at {p.name}'s replication listener ({where}) as the other processes reach it"
    return (
        ("unreachable", f"every replication request to {p.name} fails; {point}"),
        ("foreign", f"another process answers the replication requests meant for {p.name}; {point}"),
        ("404", f"that listener has no `replication` resource; {point}"),
        ("500", f"{p.name} refuses the deployment's worker_replication_secret (Synapse logs 'Invalid "
                f"Authorization header'): it runs with another secret, or another Synapse answers there; give "
                f"every process the same worker_replication_secret and restart them"),
        ("", f"replication requests to {p.name} fail the same way; {point}"),
    )
