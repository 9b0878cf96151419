"""A process that sends READY=1 (Synapse: once its listeners are bound) is probed at once when
it does, not at the next step of the probes' backoff (up to 0.5 s later); one that does not
send it is probed as before. Fake Synapse processes, real probes."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys

import pytest
from helpers import Deployment

from synsup.supervisor.engine.supervisor import Supervisor
from synsup.units.loader import load_deployment
from synsup.units.unit_specs import unit_specs

pytestmark = pytest.mark.integration


def ready_lags(d: Deployment, delays: dict[str, float], ready_notify: bool) -> dict[str, float]:
    """Each unit: seconds from its process's READY=1 (its own record) to synsup's `ready`."""
    for name, delay in delays.items():
        d.behave(name, ready_delay=delay, no_notify=not ready_notify)
    deployment = load_deployment([d.config], d.workers_dir, sys.executable).deployment
    specs = [dataclasses.replace(s, dependencies=(), start_beside=None, ready_notify=ready_notify)
             for s in unit_specs(deployment) if s.name in delays]
    became_ready: dict[str, float] = {}

    async def main():
        sup = Supervisor(specs, log_dir=d.state_dir, notify_dir=d.state_dir)
        sup.add_listener(lambda u: u.state.value == "ready" and became_ready.setdefault(u.spec.name, sup.clock.time()))
        async with asyncio.TaskGroup() as group:
            sup.spawn_tasks(group)
            try:
                sup.start_all()
                await asyncio.wait_for(sup.wait_until(lambda: len(became_ready) == len(specs)), 60)
            finally:
                await sup.stop_all()
                sup.cancel_tasks()
        sup.close()
    asyncio.run(main())
    with open(os.path.join(d.control, "events.jsonl")) as f:
        told = {e["name"]: e["t"] for e in map(json.loads, f) if e["event"] == "ready"}
    return {name: became_ready[name] - told[name] for name in delays}


def test_ready_1_gets_the_listeners_probed_at_once(fake_env):
    # the backoff's steps are 0.5 s apart by then: three units ready within 0.15 s of READY=1
    # by chance would be about 3 % likely; heard, each is probed within milliseconds
    lags = ready_lags(fake_env, {"main": 1.1, "generic1": 1.3, "persister1": 1.5}, ready_notify=True)
    assert all(lag < 0.15 for lag in lags.values()), lags


def test_a_process_that_sends_no_ready_1_is_judged_by_its_probes(fake_env):
    lags = ready_lags(fake_env, {"generic1": 0.5}, ready_notify=False)
    assert lags["generic1"] >= 0, lags  # ready all the same: its listeners, after the grace for READY=1
