"""Which streams each process writes and which duties it holds."""

from __future__ import annotations

import dataclasses
from typing import Any

from .model import MAIN_ALIASES, Deployment, LayeredConfig, Process

STREAMS = (
    "events typing to_device account_data receipts presence push_rules "
    "device_lists thread_subscriptions quarantined_media_changes"
).split()
SINGLE_WRITER_STREAMS = ("typing", "to_device", "account_data", "presence", "push_rules")
MAIN_WRITER_STREAMS = ("quarantined_media_changes",)  # main must be among their writers
# the Synapse release that first knows each stream key (an older one refuses the config)
STREAMS_SINCE = {"push_rules": (1, 105), "device_lists": (1, 135), "thread_subscriptions": (1, 135),
                 "quarantined_media_changes": (1, 152)}

# duty name -> (list option, legacy main flag, legacy app)
SHARDED_DUTIES = {
    "federation_sender": ("federation_sender_instances", "send_federation", "synapse.app.federation_sender"),
    "pusher": ("pusher_instances", "start_pushers", "synapse.app.pusher"),
}
# duty name -> (single-worker option, legacy main flag, legacy app)
SINGLE_DUTIES = {
    "background_tasks": ("run_background_tasks_on", None, None),
    "user_directory": ("update_user_directory_from_worker", "update_user_directory", "synapse.app.user_dir"),
    "appservice_notifier": ("notify_appservices_from_worker", "notify_appservices", "synapse.app.appservice"),
    "media_background_jobs": ("media_instance_running_background_jobs", None, None),
}
# the shared keys that say which process holds which single duty (current and legacy forms)
SINGLE_DUTY_KEYS = frozenset(k for option, flag, _ in SINGLE_DUTIES.values() for k in (option, flag) if k)
SHARDED_DUTY_KEYS = frozenset(k for option, flag, _ in SHARDED_DUTIES.values() for k in (option, flag))
# the shared options that name the processes holding a duty
DUTY_OPTIONS = (
    "federation_sender_instances", "pusher_instances", "run_background_tasks_on",
    "update_user_directory_from_worker", "notify_appservices_from_worker",
    "media_instance_running_background_jobs", "outbound_federation_restricted_to",
)
# the group a worker belongs to, by the sharded duty it holds (first match wins)
GROUPS = (("events", "event_persisters"), ("federation_sender", "federation_senders"), ("pusher", "pushers"))
GROUP_WORK = {"event_persisters": "event persistence stops (no new event is stored)",
              "federation_senders": "sending to other servers stops", "pushers": "push notifications stop"}


def as_names(value: Any) -> list[str]:
    """A writer or instance list option as a list of names ("x" and ["x"] alike)."""
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def is_named(process: Process, names: list[str]) -> bool:
    if process.kind == "main":
        return any(n in MAIN_ALIASES for n in names)
    return process.instance in names


def writers_of(shared: LayeredConfig, stream: str) -> list[str]:
    writers = shared.get("stream_writers")
    return as_names(writers.get(stream)) if isinstance(writers, dict) else []


def _streams(shared: LayeredConfig, process: Process) -> tuple[str, ...]:
    return tuple(s for s in STREAMS if is_named(process, writers_of(shared, s)))


def _sharded(shared: LayeredConfig, process: Process, option: str, flag: str, app: str) -> bool:
    if option in shared:
        return is_named(process, as_names(shared.get(option)))
    if process.kind == "main":
        return bool(shared.get(flag, True))
    return process.app == app


def _single(shared: LayeredConfig, process: Process, option: str, flag: str | None, app: str | None) -> bool:
    if shared.get(option):
        return is_named(process, as_names(shared.get(option)))
    if process.kind == "main":
        return flag is None or bool(shared.get(flag, True))
    return app is not None and process.app == app


def _duties(shared: LayeredConfig, process: Process) -> tuple[str, ...]:
    duties = [d for d, spec in SHARDED_DUTIES.items() if _sharded(shared, process, *spec)]
    duties += [d for d, spec in SINGLE_DUTIES.items() if _single(shared, process, *spec)]
    if is_named(process, as_names(shared.get("outbound_federation_restricted_to"))):
        duties.append("outbound_federation_proxy")
    return tuple(duties)


def group_of(process: Process) -> str | None:
    if process.kind == "main":
        return None
    held = set(process.streams) | set(process.duties)
    return next((group for role, group in GROUPS if role in held), None)


def assign_roles(deployment: Deployment) -> Deployment:
    shared = deployment.shared

    def with_roles(p: Process) -> Process:
        return dataclasses.replace(p, streams=_streams(shared, p), duties=_duties(shared, p))

    return dataclasses.replace(
        deployment,
        main=with_roles(deployment.main),
        workers=tuple(with_roles(w) for w in deployment.workers),
    )
