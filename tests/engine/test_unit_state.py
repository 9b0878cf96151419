import pytest

from synsup.supervisor.engine.unit_state import ALLOWED, TransitionError, UnitState, check_transition

S = UnitState


def test_every_state_has_a_row():
    assert set(ALLOWED) == set(UnitState)


@pytest.mark.parametrize("old,new", [(S.STOPPED, S.READY), (S.WAITING, S.READY), (S.FAILED, S.READY),
                                     (S.STOPPING, S.STARTING), (S.BACKOFF, S.READY)])
def test_forbidden_transitions(old, new):
    with pytest.raises(TransitionError):
        check_transition(old, new)


@pytest.mark.parametrize("old,new", [(S.STOPPED, S.WAITING), (S.WAITING, S.STARTING), (S.STARTING, S.READY),
                                     (S.READY, S.UNHEALTHY), (S.STARTING, S.FAILED), (S.STOPPING, S.STOPPED)])
def test_allowed_transitions(old, new):
    check_transition(old, new)
