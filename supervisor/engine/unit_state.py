"""Unit states and the transitions allowed between them."""

from __future__ import annotations

import enum


class UnitState(enum.Enum):
    WAITING = "waiting"  # for its dependencies
    STARTING = "starting"
    READY = "ready"
    UNHEALTHY = "unhealthy"
    BACKOFF = "backoff"
    EXITED = "exited"  # exited while synsup is paused: not restarted until `synsup resume`
    FAILED = "failed"
    STOPPING = "stopping"
    STOPPED = "stopped"


S = UnitState
ALLOWED: dict[UnitState, frozenset[UnitState]] = {
    S.STOPPED: frozenset({S.WAITING, S.FAILED}),
    S.WAITING: frozenset({S.STARTING, S.STOPPED, S.FAILED}),
    S.STARTING: frozenset({S.READY, S.BACKOFF, S.EXITED, S.WAITING, S.FAILED, S.STOPPING, S.STOPPED}),
    # -> starting: a crash restart whose dependencies are ready goes from its exit to its fork
    S.READY: frozenset({S.UNHEALTHY, S.STARTING, S.BACKOFF, S.EXITED, S.WAITING, S.FAILED, S.STOPPING, S.STOPPED}),
    S.UNHEALTHY: frozenset({S.READY, S.STARTING, S.BACKOFF, S.EXITED, S.WAITING, S.FAILED, S.STOPPING,
                            S.STOPPED}),
    S.BACKOFF: frozenset({S.WAITING, S.EXITED, S.FAILED, S.STOPPED}),
    S.EXITED: frozenset({S.WAITING, S.BACKOFF, S.FAILED, S.STOPPED}),
    S.FAILED: frozenset({S.WAITING, S.STOPPED}),
    S.STOPPING: frozenset({S.STOPPED, S.FAILED}),
}


class TransitionError(RuntimeError):
    pass


def check_transition(old: UnitState, new: UnitState) -> None:
    if new is not old and new not in ALLOWED[old]:
        raise TransitionError(f"{old.value} -> {new.value} is not a unit transition")


STATE_EVENTS = {state: f"unit.{state.value}" for state in UnitState}  # one string each, not one a change
