"""Rules about sharded and singleton duties, and the warnings about legacy setups."""

from __future__ import annotations

from collections.abc import Iterator

from .model import GENERIC_WORKER_APP, Deployment, Finding, Process, error, warning
from .roles import DUTY_OPTIONS, SHARDED_DUTIES, SINGLE_DUTIES, as_names

REPLACEMENTS = {
    "synapse.app.appservice": "synapse.app.generic_worker with `notify_appservices_from_worker`",
    "synapse.app.user_dir": "synapse.app.generic_worker with `update_user_directory_from_worker`",
    "synapse.app.federation_sender": "synapse.app.generic_worker listed in `federation_sender_instances`",
    "synapse.app.pusher": "synapse.app.generic_worker listed in `pusher_instances`",
    "synapse.app.media_repository": "synapse.app.generic_worker with the `media` resource and "
                                    "`media_instance_running_background_jobs`",
    "synapse.app.frontend_proxy": "synapse.app.generic_worker (frontend_proxy is a generic worker today)",
}


def duties_name_processes(d: Deployment) -> Iterator[Finding]:
    if d.workers_dir is None:
        return  # names without a worker directory: reported once by forgotten_workers_dir
    for option in DUTY_OPTIONS:
        value = d.shared.get(option)
        if value is None or value == []:
            continue
        for name in as_names(value):
            if name == "main":
                yield error(d.shared.where(option), f"`{option}` names `main`, which Synapse does not take for the "
                            "main process here (its instance name is `master`; `main` is that only in "
                            "instance_map), so no process would do it; write `master`")
            elif d.by_instance(name) is None:
                yield error(d.shared.where(option), f"`{option}` names {name!r}, which is no process of "
                            "this deployment; add its worker file or fix the name")


def legacy_flags(d: Deployment) -> Iterator[Finding]:
    for duty, (option, flag, app) in SHARDED_DUTIES.items():
        holders = [w for w in d.workers if duty in w.duties]
        if holders and d.shared.get(flag) is True:
            yield error(d.shared.where(flag), f"`{flag}: true` keeps {duty} on main, but "
                        f"{', '.join(w.name for w in holders)} hold it; set `{flag}: false`")
        yield from _legacy_app_needs_flag(d, app, flag, option)
    for option, single_flag, single_app in SINGLE_DUTIES.values():
        if single_flag is None or single_app is None:
            continue
        if d.shared.get(option) and d.shared.get(single_flag) is True:
            yield error(d.shared.where(single_flag), f"`{single_flag}: true` contradicts `{option}`; "
                        f"remove `{single_flag}` (it is the legacy form)")
        yield from _legacy_app_needs_flag(d, single_app, single_flag, option)


def _legacy_app_needs_flag(d: Deployment, app: str, flag: str, option: str) -> Iterator[Finding]:
    for w in d.workers:
        if w.app == app and option not in d.shared and d.shared.get(flag, True) is not False:
            yield error(w.at("worker_app"), f"{w.name}: worker_app {app} needs `{flag}: false` in the "
                        f"shared config (Synapse refuses to start it otherwise); add it, or use "
                        f"{GENERIC_WORKER_APP} with `{option}`")


def outbound_federation(d: Deployment) -> Iterator[Finding]:
    names = as_names(d.shared.get("outbound_federation_restricted_to"))
    if not names:
        return
    at = d.shared.where("outbound_federation_restricted_to")
    if not d.shared.get("worker_replication_secret"):
        yield error(at, "`outbound_federation_restricted_to` needs `worker_replication_secret`; "
                    "add a random secret to the shared config")
    instance_map = d.shared.get("instance_map") or {}
    for name in names:
        if isinstance(instance_map, dict) and name not in instance_map and d.by_instance(name):
            yield error(at, f"`outbound_federation_restricted_to` names {name!r}, which is missing "
                        "from `instance_map`; add it there")


def deprecated_apps(d: Deployment) -> Iterator[Finding]:
    for w in d.workers:
        if w.app in REPLACEMENTS:
            yield warning(w.at("worker_app"), f"{w.name}: worker_app {w.app} is deprecated; use "
                          f"{REPLACEMENTS[w.app]}", "deprecated-app")
        elif w.app != GENERIC_WORKER_APP and w.app.startswith("synapse.app."):
            yield warning(w.at("worker_app"), f"{w.name}: worker_app {w.app} is a legacy name; "
                          f"use {GENERIC_WORKER_APP}", "deprecated-app")


MEDIA_APP = "synapse.app.media_repository"


def _serves_media(d: Deployment, w: Process) -> bool:
    background = as_names(d.shared.get("media_instance_running_background_jobs"))
    return (w.app == MEDIA_APP or w.instance in background
            or any("media" in listener.resources for listener in w.listeners))


def media_on_main(d: Deployment) -> Iterator[Finding]:
    media_workers = [w.name for w in d.workers if _serves_media(d, w)]
    if not media_workers or d.main.config.get("enable_media_repo", True) is False:
        return
    yield warning(d.main.at("enable_media_repo"), f"{', '.join(media_workers)} serve media, but main does too "
                  "(`enable_media_repo` is not false for it): set `enable_media_repo: false` in the shared "
                  "config and `enable_media_repo: true` in the media workers' files, as Synapse's workers "
                  "documentation asks", "media-on-main")


def unused_keys(d: Deployment) -> Iterator[Finding]:
    notes = {
        "pid_file": "synsup tracks the processes itself; remove it",
        "worker_pid_file": "synsup tracks the processes itself; remove it",
        "worker_main_http_uri": "Synapse ignores it since 1.73; remove it",
    }
    seen = set()
    for p in d.processes:
        for key, note in notes.items():
            at = p.at(key)
            if key in p.config and (at.file, key) not in seen:
                seen.add((at.file, key))
                yield warning(at, f"`{key}` is unused under synsup: {note}", "unused-key")


RULES = (duties_name_processes, legacy_flags, outbound_federation)
WARNINGS = (deprecated_apps, unused_keys, media_on_main)
