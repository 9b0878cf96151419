"""The chaos matrix of issue 18 over the in-memory cluster (tests/cluster_model.py: the store's
rules, the leader, the planner, membership and the daemons' join rules for real; processes as
runs; a fake clock): at every phase boundary of a persister change (persister2 moving from b to
c, persister3 added on b), each fault, then how the case ends and whether the invariant held (no
process with the new events map ran beside an old-map events writer, on any host). Needs
nothing but this checkout: no etcd, no root.

  .venv/bin/python contrib/bench/cluster_chaos.py [--markdown] [--phases N]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests"))

import structlog  # noqa: E402
from cluster_model import FAULTS, PHASES, Outcome, persister_change  # noqa: E402


async def matrix(phases: int) -> list[Outcome]:
    return [await persister_change(fault, at) for fault in FAULTS for at in range(min(phases, len(PHASES)))]


def table(outcomes: list[Outcome], markdown: bool) -> str:
    rows = [(o.fault, o.phase, o.outcome, "yes" if o.invariant_held else f"NO: {o.overlaps[0]}",
             f"{o.seconds:g}", str(o.store_requests)) for o in outcomes]
    head = ("case", "at phase (struck)", "outcome", "invariant held", "fake s", "model store calls")
    if markdown:
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                         + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--phases", type=int, default=len(PHASES), help="the first N phase boundaries only")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    began = time.process_time()
    outcomes = asyncio.run(matrix(args.phases))
    print(table(outcomes, args.markdown))
    held = sum(o.invariant_held for o in outcomes)
    done = sum(o.outcome.startswith("done") for o in outcomes)
    blocked = sum(o.outcome.startswith("blocked: ") for o in outcomes)
    print(f"\n{len(outcomes)} cases: {done} done, {blocked} blocked with a reason, "
          f"{len(outcomes) - done - blocked} neither; invariant held in {held}; "
          f"{time.process_time() - began:.2f} s of CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
