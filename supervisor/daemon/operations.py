"""The daemon's phase, and its operations run one at a time.

Start, restart and reload go through one queue and run in arrival order; a request that
arrives during another operation waits its turn. Stop preempts: it cancels the operation in
flight, refuses what is queued and what comes later ("synsup is stopping")."""

from __future__ import annotations

import asyncio
import enum
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import structlog

if TYPE_CHECKING:
    from ..engine.supervisor import Supervisor
    from .running_config import RunningConfig
    from .systemd import SystemdNotifier

log = structlog.get_logger()


class Phase(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    DEGRADED = "degraded"  # running, and some unit is not ready
    RELOADING = "reloading"
    UPGRADING = "upgrading"
    STOPPING = "stopping"
    STOPPED = "stopped"


P = Phase
ALLOWED: dict[Phase, frozenset[Phase]] = {
    P.STARTING: frozenset({P.RUNNING, P.DEGRADED, P.STOPPING}),
    P.RUNNING: frozenset({P.DEGRADED, P.RELOADING, P.UPGRADING, P.STOPPING}),
    P.DEGRADED: frozenset({P.RUNNING, P.RELOADING, P.UPGRADING, P.STOPPING}),
    P.RELOADING: frozenset({P.RUNNING, P.DEGRADED, P.STOPPING}),
    P.UPGRADING: frozenset({P.RUNNING, P.DEGRADED, P.STOPPING}),
    P.STOPPING: frozenset({P.STOPPED}),
    P.STOPPED: frozenset(),
}


class Lifecycle:
    """The daemon's phase: one enum, one table of allowed moves, one method that moves it."""

    def __init__(self, on_change: Callable[[Phase], None] | None = None) -> None:
        self.phase = P.STARTING
        self._on_change = on_change

    def move(self, new: Phase) -> None:
        if new is self.phase:
            return
        if new not in ALLOWED[self.phase]:
            raise RuntimeError(f"daemon phase {self.phase.value} -> {new.value} is not allowed")
        log.info("daemon.phase", phase=new.value)
        self.phase = new
        if self._on_change is not None:
            self._on_change(new)

    def settle(self, all_ready: bool) -> None:
        """After an operation, or when a unit changes while none runs: running or degraded."""
        if self.phase in (P.STARTING, P.RUNNING, P.DEGRADED, P.RELOADING, P.UPGRADING):
            self.move(P.RUNNING if all_ready else P.DEGRADED)

    @property
    def stopping(self) -> bool:
        return self.phase in (P.STOPPING, P.STOPPED)


class Stopping(Exception):
    def __str__(self) -> str:
        return "synsup is stopping"


@dataclass
class Operation:
    name: str
    work: Callable[[], Awaitable[Any]]
    future: asyncio.Future
    started_at: float | None = None
    merged: int = field(default=0)  # later identical requests answered by this one


class Operations:
    def __init__(self) -> None:
        self.current: Operation | None = None
        self._queue: deque[Operation] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.stopping = False

    def submit(self, name: str, work: Callable[[], Awaitable[Any]], merge: bool = False) -> asyncio.Future:
        """Queue `work`; the future has its result. With `merge`, a queued (not yet running)
        operation of the same name answers this request too."""
        if self.stopping:
            raise Stopping()
        if merge:
            for queued in self._queue:
                if queued.name == name:
                    queued.merged += 1
                    return queued.future
        op = Operation(name, work, asyncio.get_running_loop().create_future())
        self._queue.append(op)
        self._wake.set()
        return op.future

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue and not self.stopping:
                await self._run_one(self._queue.popleft())

    async def _run_one(self, op: Operation) -> None:
        self.current, op.started_at = op, time.time()
        log.info("operation.started", operation=op.name)
        self._task = asyncio.ensure_future(op.work())
        try:
            result = await asyncio.shield(self._task)
        except asyncio.CancelledError:
            if not op.future.done():
                op.future.set_exception(Stopping())  # preempted by stop: its client is told so
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                self._task.cancel()  # we were cancelled ourselves: so is the work
                raise
        except Exception as e:
            log.exception("operation.failed", operation=op.name)
            if not op.future.done():
                op.future.set_exception(e)
        else:
            if not op.future.done():
                op.future.set_result(result)
        finally:
            log.info("operation.done", operation=op.name)
            self.current, self._task = None, None

    def preempt(self) -> None:
        """Stop wins: cancel what runs, refuse what waits and what comes later."""
        self.stopping = True
        if self._task is not None:
            self._task.cancel()
        while self._queue:
            op = self._queue.popleft()
            if not op.future.done():
                op.future.set_exception(Stopping())

    def status(self) -> dict[str, Any]:
        current = self.current
        return {
            "operation": {"name": current.name, "started_at": current.started_at} if current else None,
            "queued": [op.name for op in self._queue],
        }


class OperationView(Protocol):
    """What an operation that changes the running config (a reload, an upgrade) uses of the
    daemon: its units and their config, the queue, the phase it moves, systemd it tells."""

    @property
    def supervisor(self) -> Supervisor | None: ...

    @property
    def running(self) -> RunningConfig: ...

    @property
    def paused(self) -> bool: ...

    @property
    def operations(self) -> Operations: ...

    @property
    def lifecycle(self) -> Lifecycle: ...

    @property
    def notifier(self) -> SystemdNotifier: ...

    def settle(self) -> None: ...

    def status_line(self) -> str: ...
