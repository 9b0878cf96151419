"""Every node restarted at once with new config files (the in-memory cluster of
tests/cluster_model.py, fake clock): exactly one daemon leads the change and the others follow;
it ends done with every process on the new events map and none beside an old-map writer.

Pins the deadlock where each daemon, back with files other than the applied ones, gave up the
leader key to wait for a node that still had the applied files: none had, so nobody led and
every node held its Synapse processes for ever."""

from __future__ import annotations

import asyncio

import pytest
from cluster_model import TTL, Model


@pytest.mark.parametrize("processes_too", [False, True], ids=["daemons-killed", "everything-stopped"])
def test_every_node_back_with_new_files_at_once_one_leads_the_change_the_others_follow(processes_too: bool) -> None:
    async def body() -> tuple[Model, bool]:
        model = Model()
        await model.boot()
        assert await model.run_until(model.all_ready, 10 * TTL)
        await model.restart_everywhere(processes_too)
        return model, await model.run_until(model.all_ready, 20 * TTL)
    model, done = asyncio.run(body())
    assert done, [h.looks[-3:] for h in model.hosts.values()]
    assert len(model.proposals()) == 1, model.proposals()
    assert model.world.overlaps() == []
    assert {r.map for r in model.world.runs if r.exit is None and r.name != "redis"} == {"p1,p2,p3"}
