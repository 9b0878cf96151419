"""The environment a unit's process gets: a clean one, not all of synsup's.

Kept from synsup's own: PATH, LANG, LC_*, TZ, HOME, USER, LOGNAME, PYTHON* and SYNAPSE_*;
then the unit spec's own variables (e.g. synctl's cache factors), then NOTIFY_SOCKET. Secrets
synsup itself may hold (AWS_*, SSH_AUTH_SOCK, ...) never reach a unit."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

KEPT = frozenset({"PATH", "LANG", "TZ", "HOME", "USER", "LOGNAME"})
KEPT_PREFIXES = ("LC_", "PYTHON", "SYNAPSE_")


def kept(name: str) -> bool:
    return name in KEPT or name.startswith(KEPT_PREFIXES)


def unit_environment(spec_env: Iterable[tuple[str, str]], notify_socket: str | None,
                     base: Mapping[str, str] | None = None) -> dict[str, str]:
    base = os.environ if base is None else base
    env = {k: v for k, v in base.items() if kept(k)}
    env.update(spec_env)
    if notify_socket is not None:
        env["NOTIFY_SOCKET"] = notify_socket
    return env
