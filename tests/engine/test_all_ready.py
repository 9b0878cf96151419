"""Supervisor.all_ready looks on from the unit it last found not ready (500 units becoming ready
one by one made a look from the first unit each time, all of them every time): the answer is
still the one a look at every unit gives, whatever the order units become ready or go down."""

from __future__ import annotations

import random

from synsup.supervisor.engine.supervisor import Supervisor, first_not, settled
from synsup.supervisor.engine.unit_state import UnitState
from synsup.supervisor.spec import UnitSpec


def test_all_ready_agrees_with_a_full_look_in_any_order(tmp_path):
    sup = Supervisor([UnitSpec(name=f"u{i}", argv=("true",)) for i in range(12)], log_dir=str(tmp_path),
                     notify_dir=None)
    units = list(sup.units.values())
    chance = random.Random(21)
    try:
        for _ in range(2000):
            unit = chance.choice(units)
            unit.state = chance.choice([UnitState.READY, UnitState.READY, UnitState.STARTING, UnitState.BACKOFF])
            if chance.random() < 0.05:
                for each in units:
                    each.state = UnitState.READY
            expected = all(settled(u) and not u.degraded for u in units)
            assert sup.all_ready() is expected
        sup.remove("u3")
        for each in sup.units.values():
            each.state = UnitState.READY
        assert sup.all_ready()
        sup.set_spec(UnitSpec(name="late", argv=("true",)))
        assert not sup.all_ready()  # the new unit is stopped, not ready
    finally:
        sup.close()


def test_first_not_finds_a_failing_item_wherever_it_begins():
    chance = random.Random(7)
    for _ in range(500):
        items = [chance.random() < 0.8 for _ in range(chance.randrange(0, 9))]
        begin = chance.randrange(0, 10)
        found = first_not(items, begin, bool)
        if all(items):
            assert found is None
        else:
            assert found is not None and not items[found]
            if begin < len(items):  # the first failing one from `begin` on, around the end
                assert all(items[i % len(items)] for i in range(begin, found if found >= begin else found + len(items)))
