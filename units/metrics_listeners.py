"""Where each Synapse process serves its Prometheus metrics, and the check that every one does."""

from __future__ import annotations

from collections.abc import Iterator

from synsup.supervisor.loopback import reach_host

from .model import Deployment, Finding, Listener, Process, warning
from .roles import group_of

METRICS_PATH = "/_synapse/metrics"  # served by `metrics` listeners (any path) and the `metrics` resource


def metrics_enabled(p: Process) -> bool:
    return p.config.get("enable_metrics") is True


def is_metrics_listener(listener: Listener) -> bool:
    return listener.path is None and (listener.type == "metrics" or
                                      (listener.type == "http" and "metrics" in listener.resources))


def _scrape_address(listener: Listener) -> str:
    """HOST:PORT that reaches the listener from this machine (a wildcard bind means loopback)."""
    host = reach_host(listener.addresses)
    return f"[{host}]:{listener.port}" if ":" in host else f"{host}:{listener.port}"


def metrics_targets(p: Process) -> tuple[str, ...]:
    """The process's metrics endpoints; none unless `enable_metrics` (Synapse ignores them then)."""
    if not metrics_enabled(p):
        return ()
    return tuple(dict.fromkeys(_scrape_address(l) for l in p.listeners if is_metrics_listener(l)))


def target_labels(p: Process) -> tuple[tuple[str, str], ...]:
    labels = {"job": "synapse", "worker_app": p.app, "group": group_of(p) or "",
              "__metrics_path__": METRICS_PATH}
    return tuple((k, v) for k, v in labels.items() if v)


def metrics_listener_missing(d: Deployment) -> Iterator[Finding]:
    for p in d.processes:
        if metrics_enabled(p) and not any(is_metrics_listener(l) for l in p.listeners):
            key = "listeners" if p.kind == "main" else "worker_listeners"
            yield warning(p.at(key) if key in p.config else p.at(),
                          f"{p.name}: `enable_metrics: true` but it has no metrics listener, so Prometheus "
                          f"cannot scrape it; add `{{type: metrics, port: PORT, bind_addresses: [127.0.0.1]}}` "
                          f"to its `{key}`", "metrics-no-listener")


def metrics_listener_unused(d: Deployment) -> Iterator[Finding]:
    for p in d.processes:
        listeners = [l for l in p.listeners if l.type == "metrics"]
        if listeners and not metrics_enabled(p):
            yield warning(listeners[0].at, f"{p.name}: a metrics listener without `enable_metrics: true` "
                          "is not started by Synapse; set `enable_metrics: true` or remove the listener",
                          "metrics-not-enabled")


WARNINGS = (metrics_listener_missing, metrics_listener_unused)
