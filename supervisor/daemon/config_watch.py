"""Watching config files: one batch of changed paths once the files have settled.

A batch is yielded only after no relevant change was seen for `settle` seconds, so a file
written in two chunks is read once, complete, and a burst of edits is one reload. The parents
of watched directories are watched too: a directory that is removed and created again ends
the iteration (after yielding what changed), and the caller watches the new one."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from watchfiles import Change


def watch_targets(paths: list[str]) -> tuple[set[str], set[str]]:
    """(files to watch, directories whose *.yaml files count) for the config paths."""
    files: set[str] = set()
    dirs: set[str] = set()
    for path in paths:
        # a symlinked config (Ansible, Nix, a Kubernetes ConfigMap) is edited at its target
        for each in {os.path.abspath(path), os.path.realpath(path)}:
            (dirs if os.path.isdir(path) else files).add(each)
    return files, dirs


def files_read(paths: list[str]) -> tuple[tuple[str, bytes | int], ...]:
    """What a reload would read of the watched config: each file's path and bytes (the *.yaml
    files of a watched directory included; a missing or unreadable one as its errno). Two equal
    answers mean the files did not change in between. Config files are a few KB: kept as they
    are, not digested (hashlib loads OpenSSL's libcrypto into the daemon)."""
    files, dirs = watch_targets(paths)
    for directory in dirs:
        try:
            files |= {os.path.join(directory, n) for n in os.listdir(directory) if n.endswith(".yaml")}
        except OSError:
            files.add(directory)
    read: list[tuple[str, bytes | int]] = []
    for path in sorted(files):
        try:
            with open(path, "rb") as f:
                read.append((path, f.read()))
        except OSError as e:
            read.append((path, e.errno or -1))
    return tuple(read)


def _resolved(paths: list[str]) -> dict[str, str]:
    return {path: os.path.realpath(path) for path in paths}


def _relevant(path: str, files: set[str], dirs: set[str]) -> bool:
    return path in files or path in dirs or (os.path.dirname(path) in dirs and path.endswith(".yaml"))


Batch = set[tuple["Change", str]]


async def _pump(roots: list[str], queue: asyncio.Queue[Batch | Exception]) -> None:
    import watchfiles  # imported only when there are files to watch: its Rust extension costs MB of RSS
    try:
        async for changes in watchfiles.awatch(*roots, debounce=200, step=50, recursive=False,
                                               ignore_permission_denied=True):
            queue.put_nowait(changes)
    except Exception as e:  # a root vanished, inotify limits: the caller watches again
        queue.put_nowait(e)


async def config_changes(paths: list[str], settle: float = 1.0) -> AsyncIterator[list[str]]:
    """Yields the relevant changed paths, one batch per settled change."""
    if not paths:  # a source that names no file: nothing will ever change (no 1 s poll)
        await asyncio.Event().wait()
    files, dirs = watch_targets(paths)
    roots = sorted({os.path.dirname(f) for f in files} | dirs | {os.path.dirname(d) for d in dirs})
    roots = [r for r in roots if os.path.isdir(r)]
    if not roots:
        await asyncio.sleep(settle)  # nothing to watch yet: the caller looks again
        return
    resolved = _resolved(paths)
    queue: asyncio.Queue[Batch | Exception] = asyncio.Queue()
    pump = asyncio.ensure_future(_pump(roots, queue))
    pending: set[str] = set()
    try:
        while True:
            try:
                async with asyncio.timeout(settle if pending else None):
                    changes = await queue.get()
            except TimeoutError:
                yield sorted(pending)
                pending.clear()
                continue
            if isinstance(changes, Exception):
                raise changes
            pending |= {p for _, p in changes if _relevant(p, files, dirs)}
            moved = [p for p, real in resolved.items() if os.path.realpath(p) != real]
            if moved:  # a symlink now points elsewhere (a ConfigMap's ..data swap): watch the new target
                pending |= {os.path.abspath(p) for p in moved}
            if moved or any(p in dirs or (p in files and os.path.isdir(p)) for _, p in changes):
                # a watched dir itself was removed, or is back: watch it anew
                await asyncio.sleep(settle)
                yield sorted(pending)
                return
    finally:
        pump.cancel()
