"""Synapse's verdict on a deployment's configs, kept while its inputs stay the same.

Running Synapse's own config loader for every process costs seconds; `synsup start` used to
pay it twice (the command, then the daemon) and `synsup check` every time. A verdict that
passed is kept under a digest of everything it read: each config file's contents, the files
those configs name (by absolute path: size and mtime), the interpreter, the SYNAPSE_* and PYTHON*
environment and the loader script. The Synapse install is compared when the entry is read (its
package's and site-packages' mtimes), since which Synapse `--python` imports is learnt only by
running it. A failing verdict is never kept.

Where: `synapse-check.json` in the state dir when it exists and is ours, else in
$XDG_CACHE_HOME/synsup (default ~/.cache/synsup, made 0700). Both are looked in, the state dir
first. A file that is not a regular file of ours, mode 0600, or that does not parse is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator
from typing import Any

CACHE_FILE = "synapse-check.json"
KEEP = 8  # verdicts kept per file (deployments, or versions of one)


def cache_dirs(state_dir: str | None) -> list[str]:
    """Where verdicts may be: the state dir, then the user's cache dir."""
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return [d for d in (state_dir, os.path.join(xdg, "synsup")) if d]


def _ours(st: os.stat_result, private: int) -> bool:
    return st.st_uid == os.geteuid() and not st.st_mode & private


def _usable_dir(path: str) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and _ours(st, 0o022)


def _fingerprint(path: str) -> list[Any]:
    try:
        st = os.stat(path)
    except OSError:
        return [path, None]
    if stat.S_ISDIR(st.st_mode):  # a directory's contents change with use (media_store): only that it is one
        return [path, "dir"]
    return [path, st.st_size, st.st_mtime_ns, st.st_ino]


def _named_paths(value: Any) -> Iterator[str]:
    """Every absolute path among a config's string values (log config, keys, secrets, ...)."""
    if isinstance(value, str):
        if value.startswith("/") and "\n" not in value:
            yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _named_paths(item)
    elif isinstance(value, list):
        for item in value:
            yield from _named_paths(item)


def inputs_digest(jobs: dict, python: str, configs: list[dict], script: str) -> str:
    """A digest of everything Synapse's loader reads for `jobs` (see the module's text)."""
    files = sorted({a for job in jobs["processes"] for a in job["args"] if a != "--config-path"})
    h = hashlib.sha256(json.dumps([jobs, python, os.path.realpath(python), script]).encode())
    h.update(json.dumps([_fingerprint(os.path.realpath(python)), sorted(
        (k, v) for k, v in os.environ.items() if k.startswith(("SYNAPSE_", "PYTHON")))]).encode())
    for path in files:
        try:
            with open(path, "rb") as f:
                h.update(path.encode() + b"\0" + f.read() + b"\0")
        except OSError:
            h.update(path.encode() + b"\0missing\0")
    named = sorted({p for config in configs for p in _named_paths(config)} - set(files))
    h.update(json.dumps([_fingerprint(p) for p in named]).encode())
    return h.hexdigest()


def install_fingerprint(package_file: str) -> list[Any]:
    """What changes when Synapse (or anything beside it) is installed anew."""
    package = os.path.dirname(package_file)
    return [_fingerprint(package_file), _fingerprint(package)[:1] + [_mtime(package)],
            [os.path.dirname(package), _mtime(os.path.dirname(package))]]


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


class CheckCache:
    """Passing verdicts of Synapse's config loader, keyed by `inputs_digest`."""

    def __init__(self, state_dir: str | None) -> None:
        self.dirs = cache_dirs(state_dir)

    def get(self, digest: str) -> dict | None:
        """The loader's reply for `digest`, if it passed and the Synapse install is unchanged."""
        for directory in self.dirs:
            entry: Any = self._read(directory).get(digest)
            try:
                if entry["install"] == install_fingerprint(entry["reply"]["file"]):
                    return dict(entry["reply"])
            except (TypeError, KeyError):
                pass
        return None

    def put(self, digest: str, reply: dict) -> None:
        """Keep a reply in which every process passed; never fails (a cache is optional)."""
        if "version" not in reply or not reply.get("file") or any((reply.get("results") or {"": 1}).values()):
            return
        directory = next((d for d in self.dirs if _usable_dir(d)), None)
        if directory is None and len(self.dirs) > 0:
            directory = self._make(self.dirs[-1])
        if directory is None:
            return
        entries = self._read(directory)
        entries.pop(digest, None)
        entries[digest] = {"install": install_fingerprint(reply["file"]), "reply": reply}
        self._write(directory, dict(list(entries.items())[-KEEP:]))

    @staticmethod
    def _make(directory: str) -> str | None:
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except OSError:
            return None
        return directory if _usable_dir(directory) else None

    @staticmethod
    def _read(directory: str) -> dict:
        try:
            fd = os.open(os.path.join(directory, CACHE_FILE), os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return {}
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or not _ours(st, 0o077) or not _usable_dir(directory):
                return {}
            try:
                entries = json.loads(f.read())
            except ValueError:
                return {}
        return entries if isinstance(entries, dict) else {}

    @staticmethod
    def _write(directory: str, entries: dict) -> None:
        path = os.path.join(directory, CACHE_FILE)
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(entries, f)
            os.replace(tmp, path)
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass
