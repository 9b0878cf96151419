"""A daemon killed and started again in the middle of a persister change, at each phase (the
in-memory cluster of tests/cluster_model.py, fake clock): it rejoins without a deadlock, the
plan ends done, and no process with the new events map runs beside an old-map writer.

Pins the deadlock of a daemon back in the prepare phase: its start waited for the stand-in of a
persister the plan starts only later (persister3, new), and its prepare step was queued behind
that start, so the plan waited for it for ever with no reason given."""

from __future__ import annotations

import asyncio

import pytest
from cluster_model import PHASES, TTL, persister_change


@pytest.mark.parametrize("fault", ["kill a daemon", "stop one past its lease"])
@pytest.mark.parametrize("at", range(len(PHASES)), ids=lambda i: f"{i}-{PHASES[i].split()[0]}")
def test_a_daemon_back_mid_plan_rejoins_and_the_plan_ends_done_without_overlap(fault: str, at: int) -> None:
    outcome = asyncio.run(persister_change(fault, at, seconds=20 * TTL))
    assert outcome.phase != "-", "the fault was struck"
    assert outcome.outcome == "done", outcome
    assert outcome.invariant_held, outcome.overlaps
