"""Every node restarted at once with new config files (the in-memory cluster of
tests/cluster_model.py, fake clock): exactly one daemon leads the change and the others follow;
it ends done with every process on the new events map and none beside an old-map writer.

Pins the deadlock where each daemon, back with files other than the applied ones, gave up the
leader key to wait for a node that still had the applied files: none had, so nobody led and
every node held its Synapse processes for ever. And the one where c held only the stand-ins of
units no node had placed: b, back first, had placed persister3 (which it holds), so c's adopted
workers waited for persister3's stand-in, c's start never ended, and the plan waited at prepare
for c's step, queued behind that start (the three-host test hung so when b published first)."""

from __future__ import annotations

import asyncio
import json

import pytest
from cluster_model import CONFIG, TTL, Model


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


def test_a_node_back_with_new_files_holds_the_stand_in_of_a_unit_another_node_placed_but_holds() -> None:
    async def body() -> Model:
        model = Model()
        await model.boot()
        assert await model.run_until(model.all_ready, 10 * TTL)
        await model.restart_everywhere(False)  # b boots before c: placed/b names persister3, held there
        return model
    model = asyncio.run(body())
    assert "persister3" in json.loads(model.store.keys[f"{CONFIG.store.prefix}placed/b"].value)
    c = model.hosts["c"].daemon
    assert c is not None and "persister3" in c.node.acted_on_later, "c's adopted workers would wait for it"
    assert {"main", "persister1"} <= c.node.acted_on_later, "not published ready yet either: held, not waited for"
