"""Copies of the config files an accepted config reads, kept in the state dir: units always
start from these copies (a crash restart after a rejected edit, a rollback), never from files
on disk synsup has not accepted."""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..source import Loaded
from ..spec import UnitSpec


def _config_paths(loaded: Loaded) -> list[str]:
    """argv entries that are files or directories under the watched config paths (never the interpreter)."""
    roots = [os.path.abspath(p) for p in loaded.watch_paths]

    def watched(path: str) -> bool:
        return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)

    paths = {a for s in loaded.specs for a in (s.argv or ())[1:] if a.startswith("/") and watched(a)
             and (os.path.isfile(a) or os.path.isdir(a))}
    return sorted(paths)


def _copy(path: str, copy: str) -> None:
    """A file, or a config directory's *.yaml files (what Synapse reads of a directory)."""
    if os.path.isfile(path):
        shutil.copyfile(path, copy)
        return
    os.makedirs(copy, mode=0o700, exist_ok=True)
    for name in sorted(os.listdir(path)):
        if name.endswith(".yaml") and os.path.isfile(os.path.join(path, name)):
            shutil.copyfile(os.path.join(path, name), os.path.join(copy, name))


@dataclass(frozen=True)
class ConfigSnapshot:
    loaded: Loaded
    copies: Mapping[str, str]  # original path -> copy
    directory: str = ""  # where the copies are

    @classmethod
    def take(cls, config_dir: str, serial: int, loaded: Loaded) -> ConfigSnapshot:
        target = os.path.join(config_dir, str(serial))
        shutil.rmtree(target, ignore_errors=True)  # a stale one from an earlier daemon
        os.makedirs(target, mode=0o700)
        copies = {}
        for index, path in enumerate(_config_paths(loaded)):
            copy = os.path.join(target, f"{index}-{os.path.basename(path)}")
            _copy(path, copy)
            copies[path] = copy
        return cls(loaded, copies, target)

    def specs(self) -> dict[str, UnitSpec]:
        """The specs of the snapshot's config, reading the copies instead of the files."""
        return {s.name: self._reading_copies(s) for s in self.loaded.specs}

    def _reading_copies(self, spec: UnitSpec) -> UnitSpec:
        if not spec.argv or not any(a in self.copies for a in spec.argv):
            return spec
        argv = tuple(self.copies.get(a, a) for a in spec.argv) + spec.args_when_copied
        return dataclasses.replace(spec, argv=argv)


def prune(config_dir: str, in_use: Iterable[UnitSpec], keep: Iterable[str] = ()) -> None:
    """Remove the copies no unit's spec reads any more (and that are not in `keep`)."""
    prefix = config_dir.rstrip("/") + "/"
    used = {os.path.abspath(d) for d in keep}
    used |= {prefix + a[len(prefix):].split("/", 1)[0] for s in in_use for a in (s.argv or ()) if a.startswith(prefix)}
    try:
        names = os.listdir(config_dir)
    except OSError:
        return
    for name in names:
        path = os.path.join(config_dir, name)
        if path not in used:
            shutil.rmtree(path, ignore_errors=True)
