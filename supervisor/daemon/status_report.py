"""Snapshots of the supervisor for `status`, for the start progress stream and for systemd's
STATUS= line."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Protocol

from ... import version
from ..engine.unit import Unit
from ..engine.unit_state import UnitState
from ..protocol import DaemonStatus, StatusReply, UnitReport, UnitStatus

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ..engine.supervisor import Supervisor
    from .front_door import FrontDoor
    from .operations import Lifecycle, Operations
    from .running_config import RunningConfig


class _Usage(Protocol):
    def usage(self, units: Iterable[Unit]) -> dict[str, dict[str, Any]]: ...


class _Reloads(Protocol):
    @property
    def generation(self) -> int: ...

    @property
    def rejected(self) -> list[str] | None: ...

    @property
    def last(self) -> dict[str, Any] | None: ...


class _Upgrades(Protocol):
    @property
    def last(self) -> dict[str, Any] | None: ...


class StatusView(Protocol):
    """What `status` reads of the daemon."""

    @property
    def supervisor(self) -> Supervisor | None: ...

    @property
    def telemetry(self) -> _Usage: ...

    @property
    def running(self) -> RunningConfig: ...

    @property
    def front_door(self) -> FrontDoor | None: ...

    @property
    def reloads(self) -> _Reloads: ...

    @property
    def upgrades(self) -> _Upgrades: ...

    @property
    def operations(self) -> Operations: ...

    @property
    def lifecycle(self) -> Lifecycle: ...

    @property
    def image_started_at(self) -> float: ...

    @property
    def paused(self) -> bool: ...


def status_reply(d: StatusView, names: list[str] | None = None) -> StatusReply:
    """The daemon and its units (those named, else all), as `status` answers."""
    sup = d.supervisor
    assert sup is not None
    now, door = time.time(), d.front_door
    chosen = [u for n, u in sup.units.items() if not names or n in names]
    usage = d.telemetry.usage(chosen)
    units = [UnitReport(**unit_status(u, now).as_json(), **d.running.unit_fields(u.spec),
                        **usage[u.spec.name], proxy=door.unit_state(u.spec.name) if door else None)
             for u in chosen]
    extra = {**d.running.status(d.reloads.generation), "reload_error": d.reloads.rejected,
             "image_started_at": d.image_started_at, "paused": d.paused,
             "last_reload": d.reloads.last, "last_upgrade": d.upgrades.last, **d.operations.status(),
             "proxy": door.status() if door else None}
    return StatusReply(daemon_status(os.getpid(), d.lifecycle.phase.value, extra), units)


def status_line(units: list[Unit]) -> str:
    """systemd's STATUS=: how many units are ready, the first few that are not."""
    ready = sum(u.state is UnitState.READY for u in units)
    others = [f"{u.spec.name} in {u.state.value}" for u in units
              if u.state not in (UnitState.READY, UnitState.WAITING)]
    line = f"{ready}/{len(units)} ready"
    slow = next((u for u in units if u.spec.slow_start and u.state is UnitState.STARTING), None)
    if slow is not None:
        line = f"starting {slow.spec.name} ({slow.spec.slow_start}); {line}"
    return line + ("; " + ", ".join(others[:3]) if others and ready < len(units) else "")


def unit_status(unit: Unit, now: float) -> UnitStatus:
    spec = unit.spec
    return UnitStatus(
        name=spec.name,
        kind=spec.kind,
        app=spec.app,
        step=spec.step,
        state=unit.state.value,
        pid=unit.pid,
        restarts=unit.restarts,
        since=unit.since,
        uptime=(now - unit.started_at) if unit.pid and unit.started_at else None,
        group=spec.group,
        health=unit.health,
        degraded=unit.degraded,
        last_exit=unit.last_exit.as_json() if unit.last_exit else None,
        error=unit.error,
        last_error=unit.last_error,
        last_error_at=unit.last_error_at,
        retry_at=unit.retry_at,
        held=unit.held,
        waiting_for=blocked.spec.name if (blocked := unit.blocked_by) else None,
        log=unit.output.describe_drops(),
        version=spec.version or None,
        installed=unit.installed.note(spec),
    )


def daemon_status(pid: int, state: str, extra: dict[str, Any]) -> DaemonStatus:
    return DaemonStatus(pid, version(), state, **extra)
