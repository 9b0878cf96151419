"""What synsup says about what happened (issue 22, "Messages and states"), in-process."""

from __future__ import annotations

from types import SimpleNamespace

from synsup.supervisor.daemon.handlers import sharded_group_warnings
from synsup.supervisor.spec import UnitSpec


def _units(*members, group="pushers", work="push notifications stop"):
    return {name: SimpleNamespace(spec=UnitSpec(name=name, argv=("x",), group=group, group_work=work),
                                  wanted=True, held=False) for name in members}


def test_stopping_the_only_pusher_says_push_notifications_stop():
    [warning] = sharded_group_warnings(_units("pusher1"), ["pusher1"])
    assert warning.startswith("pusher1 is the only running member of the sharded group pushers: "
                              "push notifications stop until it runs again")
    assert "others keep running" not in warning


def test_stopping_every_member_says_the_work_stops_and_one_of_several_that_the_others_keep_it():
    units = _units("pusher1", "pusher2")
    [warning] = sharded_group_warnings(units, ["pusher1", "pusher2"])
    assert "pusher1, pusher2" in warning and "push notifications stop" in warning
    [warning] = sharded_group_warnings(units, ["pusher1"])
    assert "the others keep running" in warning and "pusher2" in warning
    units["pusher2"].held = True  # stopped by the admin before
    [warning] = sharded_group_warnings(units, ["pusher1"])
    assert "push notifications stop" in warning
