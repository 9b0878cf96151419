"""Watching config files: one batch of changed paths per editor save."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import watchfiles


def watch_targets(paths: list[str]) -> tuple[set[str], set[str]]:
    """(files to watch, directories whose *.yaml files count) for the config paths."""
    files: set[str] = set()
    dirs: set[str] = set()
    for path in paths:
        (dirs if os.path.isdir(path) else files).add(os.path.abspath(path))
    return files, dirs


async def config_changes(paths: list[str], stop: asyncio.Event) -> AsyncIterator[list[str]]:
    """Yields the relevant changed paths, one batch per editor save (debounced)."""
    files, dirs = watch_targets(paths)
    roots = sorted({os.path.dirname(f) for f in files} | dirs)
    roots = [r for r in roots if os.path.isdir(r)]
    if not roots:
        return
    async for changes in watchfiles.awatch(*roots, stop_event=stop, debounce=1000, step=200,
                                           recursive=False, ignore_permission_denied=True):
        relevant = sorted({p for _, p in changes if p in files or
                           (os.path.dirname(p) in dirs and p.endswith(".yaml"))})
        if relevant:
            yield relevant
