"""Copies of the config files the running units were started with, so that a unit can be
rolled back to its last good config even after the files on disk changed."""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass

from ..source import Loaded
from ..spec import UnitSpec


def _config_files(loaded: Loaded) -> list[str]:
    """argv entries that are files under the watched config paths (never the interpreter)."""
    roots = [os.path.abspath(p) for p in loaded.watch_paths]

    def watched(path: str) -> bool:
        return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)

    files = {a for s in loaded.specs for a in (s.argv or ())[1:]
             if a.startswith("/") and watched(a) and os.path.isfile(a)}
    return sorted(files)


@dataclass(frozen=True)
class ConfigSnapshot:
    loaded: Loaded
    copies: Mapping[str, str]  # original path -> copy

    @classmethod
    def take(cls, config_dir: str, generation: int, loaded: Loaded) -> ConfigSnapshot:
        target = os.path.join(config_dir, str(generation))
        os.makedirs(target, mode=0o700, exist_ok=True)
        copies = {}
        for index, path in enumerate(_config_files(loaded)):
            copy = os.path.join(target, f"{index}-{os.path.basename(path)}")
            shutil.copyfile(path, copy)
            copies[path] = copy
        for old in os.listdir(config_dir):  # only the last good generation is kept
            if old != str(generation):
                shutil.rmtree(os.path.join(config_dir, old), ignore_errors=True)
        return cls(loaded, copies)

    def specs(self) -> dict[str, UnitSpec]:
        """The specs of the snapshot's config, reading the copies instead of the files."""
        return {s.name: dataclasses.replace(s, argv=tuple(self.copies.get(a, a) for a in s.argv))
                if s.argv else s for s in self.loaded.specs}
