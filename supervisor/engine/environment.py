"""The environment a unit's process gets: a clean one, not all of synsup's.

Kept from synsup's own: PATH, LANG, LC_*, TZ, HOME, USER, LOGNAME, PYTHON* and the prefixes the
spec keeps (`UnitSpec.keep_env`, e.g. SYNAPSE_* for Synapse);
then the variables of `--env-file` (an EnvironmentFile, as Debian's /etc/default/matrix-synapse),
then the unit spec's own variables (e.g. synctl's cache factors), then NOTIFY_SOCKET. Secrets
synsup itself may hold (AWS_*, SSH_AUTH_SOCK, ...) never reach a unit."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Mapping

from ..errors import SynsupError
from ..source import Loaded

KEPT = frozenset({"PATH", "LANG", "TZ", "HOME", "USER", "LOGNAME"})
KEPT_PREFIXES = ("LC_", "PYTHON")


def kept(name: str, prefixes: tuple[str, ...] = ()) -> bool:
    return name in KEPT or name.startswith(KEPT_PREFIXES + prefixes)


_KEPT_OWN: dict[tuple[str, ...], tuple[object, dict[str, str]]] = {}  # keep -> (synsup's environ as bytes, kept of it)


def _kept_own(keep: tuple[str, ...]) -> dict[str, str]:
    """What a unit keeps of synsup's own environment, made again only when that changed: going
    through os.environ decodes every variable (30 us of each spawn, on the way to a respawn)."""
    raw = getattr(os.environ, "_data", None)
    now = tuple(raw.items()) if isinstance(raw, dict) else None
    made = _KEPT_OWN.get(keep)
    if made is not None and now is not None and made[0] == now:
        return made[1]
    env = {k: v for k, v in os.environ.items() if kept(k, keep)}
    if now is not None:
        if len(_KEPT_OWN) > 64:
            _KEPT_OWN.clear()
        _KEPT_OWN[keep] = (now, env)
    return env


def unit_environment(spec_env: Iterable[tuple[str, str]], notify_socket: str | None,
                     base: Mapping[str, str] | None = None, keep: tuple[str, ...] = ()) -> dict[str, str]:
    env = dict(_kept_own(keep)) if base is None else {k: v for k, v in base.items() if kept(k, keep)}
    env.update(spec_env)
    if notify_socket is not None:
        env["NOTIFY_SOCKET"] = notify_socket
    return env


class EnvFileError(SynsupError):
    pass


NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_ARG_STRLEN = 131072  # Linux: one KEY=VALUE string of an exec, its final NUL included (128 KiB)


def _check_size(key: str, value: str) -> None:
    """A variable execve(2) refuses ("Argument list too long") fails every unit: said at start."""
    size = len(f"{key}={value}".encode())
    if size + 1 > MAX_ARG_STRLEN:
        raise ValueError(f"{key} is {size} bytes as KEY=VALUE, over Linux's limit of {MAX_ARG_STRLEN} bytes "
                         "per variable (MAX_ARG_STRLEN, 128 KiB with its final NUL), so no unit could start; "
                         "shorten the value")


def _value(raw: str) -> str:
    """VALUE, 'VALUE' or "VALUE" (backslash escapes in double quotes); ValueError if a quote is open."""
    raw = raw.strip()
    if raw[:1] in ("'", '"'):
        quote = raw[0]
        if len(raw) < 2 or raw[-1] != quote:
            raise ValueError(f"the value opens a {quote} quote and does not close it at the end of the line")
        inner = raw[1:-1]
        return re.sub(r'\\(["\\$`])', r"\1", inner) if quote == '"' else inner
    return raw


def parse_line(line: str) -> tuple[str, str] | None:
    """(KEY, VALUE) of one line, None for a blank line or a comment; ValueError saying what is wrong."""
    line = line.strip()
    if not line or line[0] in "#;":
        return None
    key, equals, raw = line.removeprefix("export ").partition("=")
    key = key.strip()
    if not equals:
        raise ValueError("expected KEY=VALUE")
    if not NAME.fullmatch(key):
        raise ValueError(f"{key!r} is not a variable name (letters, digits and _, not starting with a digit)")
    value = _value(raw)
    _check_size(key, value)
    return key, value


def read_env_file(path: str) -> dict[str, str]:
    """The variables of an EnvironmentFile: KEY=VALUE lines, # comments, optional quotes."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise EnvFileError(f"cannot read env file {path}: {why}; fix the path given to --env-file") from None
    variables: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        try:
            pair = parse_line(line)
        except ValueError as e:
            raise EnvFileError(f"{path}:{number}: {e}; write KEY=VALUE, or # to comment the line out") from None
        if pair is not None:
            variables[pair[0]] = pair[1]
    return variables


KERNEL_CAP = 6 * 1024 * 1024  # Linux takes at most 3/4 of its 8 MiB _STK_LIM, whatever `ulimit -s` says
POINTER = 8  # each argument and variable also costs the kernel a pointer
SPAWN_RESERVE = 512  # what the spawner adds after this check (the unit's name, synsup's mark)
NAMED_AT_MOST = 4


def arg_max() -> int:
    """What the kernel lets one exec take: ARG_MAX (a quarter of the stack limit), capped."""
    try:
        limit = os.sysconf("SC_ARG_MAX")
    except (ValueError, OSError):
        limit = -1
    return min(limit, KERNEL_CAP) if limit > 0 else MAX_ARG_STRLEN


def exec_refusal(unit: str, argv: Iterable[str], env: Mapping[str, str]) -> str | None:
    """Why the kernel would refuse to exec `argv` with `env` (E2BIG, "Argument list too long"),
    in one line naming the unit and the variables to shrink; None when it fits."""
    sizes = {k: len(f"{k}={v}".encode()) + 1 for k, v in env.items()}
    huge = next((k for k, n in sizes.items() if n > MAX_ARG_STRLEN), None)
    if huge is not None:
        return (f"{unit}: {huge} is {sizes[huge] - 1} bytes as KEY=VALUE, over Linux's limit of {MAX_ARG_STRLEN} "
                f"bytes per variable (MAX_ARG_STRLEN); {_where_from()}")
    argv_size = sum(len(a.encode()) + 1 + POINTER for a in argv)
    total = argv_size + sum(sizes.values()) + POINTER * len(sizes) + SPAWN_RESERVE
    limit = arg_max()
    if total <= limit:
        return None
    named, over = [], total - limit
    for key in sorted(sizes, key=sizes.__getitem__, reverse=True)[:NAMED_AT_MOST]:
        named.append(f"{key} ({sizes[key] - 1} bytes)")
        over -= sizes[key] + POINTER
        if over <= 0:
            break
    return (f"{unit}: its arguments and environment take {total} bytes, over the kernel's limit of {limit} bytes "
            f"for one exec (ARG_MAX, a quarter of `ulimit -s`); shrink or remove {', '.join(named)}; {_where_from()}")


def _where_from() -> str:
    return "they come from --env-file, synsup's own environment (PATH, LANG, LC_*, PYTHON*, the kept prefixes) " \
           "or the deployment's config"


def with_environment(loaded: Loaded, variables: Mapping[str, str]) -> Loaded:
    """Every spec gets `variables` under its own (a deployment's own variables win)."""
    if not variables:
        return loaded
    specs = [dataclasses.replace(s, env=tuple(variables.items()) + s.env) for s in loaded.specs]
    return dataclasses.replace(loaded, specs=specs)
