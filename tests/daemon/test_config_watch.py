"""Watching no file costs nothing while idle (daemon/config_watch.py): with no path at all the
watch returned after `settle` and the daemon called it again, a timer firing every second
(0.03 % of a core of 500 idle units' daemon, all of its idle CPU)."""

from __future__ import annotations

import asyncio

import pytest

from synsup.supervisor.daemon.config_watch import config_changes, files_read


def test_no_paths_wait_without_returning():
    async def main():
        changes = config_changes([], settle=0.05)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(changes), 0.5)
    asyncio.run(main())


def test_files_read_changes_with_any_watched_file(tmp_path):
    """What the watcher compares with the last reload's read: a file's bytes, a worker
    file added or removed in a watched dir, a file gone; not a non-YAML file beside them."""
    shared, workers = tmp_path / "homeserver.yaml", tmp_path / "workers"
    workers.mkdir()
    shared.write_text("a: 1\n")
    (workers / "w1.yaml").write_text("worker_name: w1\n")
    paths = [str(shared), str(workers)]
    seen = {files_read(paths)}
    (workers / "notes.txt").write_text("not config")
    assert files_read(paths) in seen
    for change in (lambda: shared.write_text("a: 2\n"), lambda: (workers / "w2.yaml").write_text(""),
                   lambda: (workers / "w1.yaml").unlink(), lambda: shared.unlink()):
        change()
        digest = files_read(paths)
        assert digest not in seen
        seen.add(digest)
    assert files_read(paths) in seen  # nothing changed since
