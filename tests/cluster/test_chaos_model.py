"""The chaos matrix of issue 18 over the in-memory cluster (tests/cluster_model.py, fake clock):
at every phase boundary of a persister change (persister2 moving from b to c, persister3 added
on b), each fault: a daemon killed (back within its lease), a daemon stopped past its lease, the
leader killed, a node cut off from the store, the store losing its quorum, a new persister that
never gets ready. Each case ends done after recovery, or blocked with the reason status gives,
and no process with the new events map ever runs beside an old-map events writer.
`contrib/bench/cluster_chaos.py --markdown` prints the same matrix as a table."""

from __future__ import annotations

import asyncio

import pytest
from cluster_model import FAULTS, PHASES, persister_change

FAILS = "a new persister fails to get ready"


@pytest.mark.parametrize("at", range(len(PHASES)), ids=lambda i: f"{i}-{PHASES[i].split()[0]}")
@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_at_each_phase_ends_done_or_blocked_with_a_reason_and_the_maps_never_overlap(
        fault: str, at: int) -> None:
    outcome = asyncio.run(persister_change(fault, at))
    assert outcome.phase != "-", "the fault was struck"
    assert outcome.invariant_held, outcome.overlaps
    if fault != FAILS:
        assert outcome.outcome == "done", outcome
    elif PHASES[at].startswith("start") or at < PHASES.index(next(p for p in PHASES if p.startswith("start"))):
        assert outcome.outcome == "blocked: node b: persister3 did not become ready (rolled back)", outcome
    else:  # it ran already and crashed after: the plan is done, its node restarts it at the same map
        assert outcome.outcome.startswith("done; degraded: persister3 not ready"), outcome
