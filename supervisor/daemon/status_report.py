"""Snapshots of the supervisor for `status` and for the start progress stream."""

from __future__ import annotations

from typing import Any

from ... import version
from ..engine.unit import Unit
from ..protocol import DaemonStatus, UnitStatus


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
