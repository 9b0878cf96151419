"""Watching no file costs nothing while idle (daemon/config_watch.py): with no path at all the
watch returned after `settle` and the daemon called it again, a timer firing every second
(0.03 % of a core of 500 idle units' daemon, all of its idle CPU)."""

from __future__ import annotations

import asyncio

import pytest

from synsup.supervisor.daemon.config_watch import config_changes


def test_no_paths_wait_without_returning():
    async def main():
        changes = config_changes([], settle=0.05)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(changes), 0.5)
    asyncio.run(main())
