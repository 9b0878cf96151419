"""How synsup recognises its own processes: one mechanism, private to it.

Every unit's process gets `_SYNSUP_OWNER_MARK=<token>/unit/<name>` in its environment, which
its descendants inherit. The token is 32 random hex digits kept in `owner.token` (0600) in the
state dir: every daemon of that state dir reads the same token (so a later one can adopt what an
earlier one started), no other user can read it, and no user sets that variable by accident (as
they may set the documented SYNSUP_STATE_DIR). A process is ours only if its mark carries the
token AND it is, or descends from, a process we recorded (pid and start time): a unit's leader,
the daemon, or a command the daemon ran (a migration: marked `command`). A command's mark also
carries a nonce that the daemon records before it forks (`<token>/command/<name>/<nonce>`), so
that it is found even when the daemon dies between the fork and recording its pid. Hooks get a
mark of their own kind (`hook`); neither is ever a unit's."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import psutil

from .statedir import StateDir, StateDirError

VARIABLE = "_SYNSUP_OWNER_MARK"
TOKEN_FILE = "owner.token"
MAX_DEPTH = 64  # parents walked up from a marked process to find one we recorded
Recorded = set[tuple[int, float]]  # (pid, create_time) of processes synsup started


class Marked(NamedTuple):
    unit: str
    create_time: float


def token_path(state: StateDir) -> str:
    return os.path.join(state.path, TOKEN_FILE)


def read_token(state: StateDir) -> str | None:
    """This state dir's token, None when there is none yet; StateDirError for a planted file."""
    try:
        fd = os.open(token_path(state), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StateDirError(f"cannot read {token_path(state)}: {e.strerror}; remove it") from None
    try:
        st = os.fstat(fd)
        token = os.read(fd, 64).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077 or \
            len(token) != 32 or any(c not in "0123456789abcdef" for c in token):
        raise StateDirError(f"{token_path(state)} is not a token synsup wrote (a regular file of ours, mode "
                            "0600, 32 hex digits); remove it")
    return token


def owner_token(state: StateDir) -> str:
    """Read the token, or make it: written whole under another name, then linked into place,
    so two daemons starting at once agree on one and nobody reads half of it."""
    token = read_token(state)
    if token is not None:
        return token
    tmp = os.path.join(state.path, f".{TOKEN_FILE}.{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, os.urandom(16).hex().encode() + b"\n")
    finally:
        os.close(fd)
    try:
        os.link(tmp, token_path(state))
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    token = read_token(state)
    assert token is not None
    return token


def unit_mark(token: str, unit: str) -> str:
    return f"{token}/unit/{unit}"


def command_mark(token: str, name: str, nonce: str) -> str:
    """What the daemon runs that is no unit but must be found after it died (a migration);
    `nonce` is recorded before the fork (`nonces_of`)."""
    return f"{token}/command/{name}/{nonce}"


def new_nonce() -> str:
    return os.urandom(8).hex()


def hook_mark(token: str, run: int) -> str:
    return f"{token}/hook/{run}"


def unit_of(environ: Mapping[str, str], token: str | None) -> str | None:
    """The unit a process's environment names with our token, None if it is not so marked."""
    kind, name, _ = _mark(environ, token)
    return name if kind == "unit" else None


def hook_run_of(environ: Mapping[str, str], token: str | None) -> str | None:
    kind, name, _ = _mark(environ, token)
    return name if kind == "hook" else None


def _mark(environ: Mapping[str, str], token: str | None) -> tuple[str | None, str | None, str]:
    """(kind, name, nonce) of a mark with our token; a command's name is followed by its nonce."""
    if not token:
        return None, None, ""
    owner, _, rest = (environ.get(VARIABLE) or "").partition("/")
    kind, _, name = rest.partition("/")
    nonce = ""
    if kind == "command":
        name, _, nonce = name.partition("/")
    return (kind, name, nonce) if owner == token and name else (None, None, "")


def recorded_of(records: Iterable[Any]) -> Recorded:
    """(pid, create_time) of every record that has both (units.json's, daemon.json's)."""
    return {(int(r["pid"]), float(r["create_time"])) for r in records
            if isinstance(r, dict) and r.get("pid") and r.get("create_time") is not None}


def nonces_of(records: Iterable[Any]) -> set[str]:
    """The nonces of the commands recorded before they were forked."""
    return {str(r["nonce"]) for r in records if isinstance(r, dict) and r.get("nonce")}


def find_ours(token: str | None, recorded: Recorded, kinds: tuple[str, ...] = ("unit", "command"),
              nonces: set[str] | frozenset[str] = frozenset()) -> dict[int, Marked]:
    """pid -> (name, start time) of every live process marked with our token (as a unit's or a
    command's, or as `kinds` say) that is, or descends from, a recorded process, or carries a
    command nonce recorded before its fork. One pass over /proc."""
    if not token:
        return {}
    tree: dict[int, tuple[int, float]] = {}
    marked: dict[int, Marked] = {}
    vouched: set[int] = set()
    for proc in psutil.process_iter(["pid", "ppid", "create_time", "status"]):
        info = proc.info
        if info["status"] == psutil.STATUS_ZOMBIE or info["create_time"] is None:
            continue
        tree[info["pid"]] = (info["ppid"] or 0, info["create_time"])
        try:
            found, name, nonce = _mark(proc.environ(), token)
        except (psutil.Error, OSError):
            continue
        if found in kinds and name:
            marked[info["pid"]] = Marked(name, info["create_time"])
            if nonce and nonce in nonces:
                vouched.add(info["pid"])
    return {pid: m for pid, m in marked.items() if pid in vouched or descends(pid, tree, recorded)}


def descends(pid: int, tree: dict[int, tuple[int, float]], recorded: Recorded) -> bool:
    for _ in range(MAX_DEPTH):
        if pid not in tree:
            return False
        parent, created = tree[pid]
        if (pid, created) in recorded:
            return True
        pid = parent
    return False
