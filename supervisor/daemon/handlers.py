"""The daemon's control requests: each validated, then answered; operations go through the
daemon's one queue, `status` answers at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ..engine.unit import Unit
from ..protocol import (
    OperationReply,
    Refusal,
    ReloadOutcome,
    ReopenedReply,
    Request,
    RequestError,
    StatusReply,
    StoppedReply,
    StopReply,
    UnitChange,
    UpgradePlanReply,
    UpgradeProgress,
    UpgradeResult,
    parse_request,
)
from .control_server import Send
from .operations import Stopping
from .reexec import ReexecView, reexec
from .status_report import unit_status

if TYPE_CHECKING:
    from .upgrade_operation import Progress


class _Forwarder(Protocol):
    async def forwarded(self, raw: dict[str, Any]) -> Refusal | dict[str, Any] | None: ...


class _Stopper(Protocol):
    async def stop(self, request: Request, send: Send) -> None: ...


class _ClusterUpgrade(Protocol):
    async def request(self, request: Request, send: Send) -> bool: ...


class _Cluster(Protocol):
    @property
    def requests(self) -> _Forwarder: ...

    @property
    def upgrader(self) -> _ClusterUpgrade: ...

    @property
    def stopper(self) -> _Stopper: ...


class _Reloads(Protocol):
    async def dry_run(self) -> ReloadOutcome | Refusal: ...

    async def request_and_wait(self) -> ReloadOutcome | Refusal: ...


class _Upgrades(Protocol):
    async def request(self, python: str | None, allow_downtime: bool, dry_run: bool,
                      progress: Progress) -> UpgradeResult | UpgradePlanReply | Refusal: ...


class _FrontDoor(Protocol):
    async def told(self) -> None: ...


class RequestsView(ReexecView, Protocol):
    """What the request handlers use of the daemon: its status and phase, its queue, the
    daemon's own verbs (pause, resume, stop, reopen logs), reloads, upgrades; reexec's view."""

    @property
    def cluster(self) -> _Cluster | None: ...

    @property
    def reloads(self) -> _Reloads: ...

    @property
    def front_door(self) -> _FrontDoor | None: ...

    @property
    def upgrades(self) -> _Upgrades: ...

    def status_reply(self, names: list[str] | None = None) -> StatusReply: ...

    def has_stopped(self) -> bool: ...

    def settle(self) -> None: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def reopen_logs(self) -> None: ...

    def stop_order(self) -> list[str]: ...

    def request_stop(self) -> None: ...

    async def stopped(self) -> None: ...


class Requests:
    def __init__(self, daemon: RequestsView) -> None:
        self.d = daemon
        # command -> its handler: every route in one table (protocol.FIELDS lists the same commands)
        self.routes: dict[str, Callable[[Request, Send], Awaitable[None]]] = {
            "status": self._cmd_status, "watch": self._cmd_watch, "reopen_logs": self._cmd_reopen_logs,
            "pause": self._cmd_pause, "resume": self._cmd_resume, "start": self._cmd_start,
            "stop": self._cmd_stop, "restart": self._cmd_restart, "reload": self._cmd_reload,
            "upgrade": self._cmd_upgrade, "reexec": self._cmd_reexec,
        }

    async def handle(self, raw: dict[str, Any], send: Send) -> None:
        sup = self.d.supervisor
        assert sup is not None
        if self.d.cluster is not None and isinstance(raw, dict) and \
                (reply := await self.d.cluster.requests.forwarded(raw)) is not None:
            await send(reply)  # units another node runs, or every node: carried out there (--cluster)
            return
        try:
            request = parse_request(raw, list(sup.units))
        except RequestError as e:
            await send(Refusal(str(e)))
            return
        if request.node is not None and self.d.cluster is None:
            await send(Refusal(f"--node {request.node}: this daemon is no node of a cluster (started without --cluster)"))
            return
        await self.routes[request.cmd](request, send)

    async def _cmd_status(self, request: Request, send: Send) -> None:
        await send(self.d.status_reply(list(request.units) or None))

    async def _cmd_watch(self, request: Request, send: Send) -> None:
        """The status, then every unit change, until the client hangs up or the daemon stops."""
        sup = self.d.supervisor
        assert sup is not None
        queue: asyncio.Queue[Unit] = asyncio.Queue()
        sup.add_listener(queue.put_nowait)
        try:
            await send(self.d.status_reply())
            while not self.d.has_stopped():
                unit = await queue.get()
                await send(UnitChange(unit_status(unit, time.time()), self.d.lifecycle.phase.value,
                                      self.d.operations.status()["operation"]))
        finally:
            sup.remove_listener(queue.put_nowait)

    async def _cmd_reopen_logs(self, request: Request, send: Send) -> None:
        self.d.reopen_logs()
        await send(ReopenedReply())

    async def _cmd_pause(self, request: Request, send: Send) -> None:
        self.d.pause()
        await send(self.d.status_reply())

    async def _cmd_resume(self, request: Request, send: Send) -> None:
        self.d.resume()
        await send(self.d.status_reply())

    async def _cmd_start(self, request: Request, send: Send) -> None:
        assert self.d.supervisor is not None
        sup, names = self.d.supervisor, list(request.units)
        await self._queued(send, "start " + " ".join(names), lambda: sup.start_units(names), names)

    async def _queued(self, send: Send, name: str, work: Callable[[], Awaitable[Any]], names: list[str],
                      warnings: list[str] | None = None, halted_at: list[str] | None = None) -> None:
        """Run `work` as an operation; answer with the status of `names` when it is done."""
        try:
            await self.d.operations.submit(name, work)
        except Stopping as e:
            await send(Refusal(str(e)))
            return
        self.d.settle()
        if self.d.front_door is not None:
            await self.d.front_door.told()
        status = self.d.status_reply(names or None)
        await send(OperationReply(status.daemon, status.units, warnings, halted_at))

    async def _stop_units(self, request: Request, send: Send) -> None:
        assert self.d.supervisor is not None
        sup, names = self.d.supervisor, list(request.units)
        external = [n for n in names if sup.units[n].spec.argv is None]
        if external:
            await send(Refusal(f"{', '.join(external)}: not run by synsup (only probed); "
                        "stop it where it runs"))
            return
        needed = {n: [d for d in sup.dependents(n) if d not in names] for n in names}
        needed = {n: deps for n, deps in needed.items() if deps}
        if needed and not request.force:
            listed = "; ".join(f"{n} is needed by {', '.join(deps)}" for n, deps in needed.items())
            await send(Refusal(f"{listed}: they cannot work without it; stop them too, "
                        "or use --force to stop it anyway"))
            return
        warnings = sharded_group_warnings(sup.units, names)
        await self._queued(send, "stop " + " ".join(names), lambda: sup.hold(names), names, warnings=warnings)

    async def _cmd_stop(self, request: Request, send: Send) -> None:
        if request.units:
            await self._stop_units(request, send)
            return
        if self.d.cluster is not None and not request.local:  # every node (--node N: N), in order
            await self.d.cluster.stopper.stop(request, send)
            return
        await send(StopReply(self.d.stop_order()))
        self.d.request_stop()
        await self.d.stopped()
        await send(StoppedReply())

    async def _cmd_restart(self, request: Request, send: Send) -> None:
        assert self.d.supervisor is not None
        sup, names = self.d.supervisor, list(request.units)
        if not request.rolling:
            await self._queued(send, "restart", lambda: sup.restart(names), names)
            return
        halted: list[str] = []  # filled when the operation ran

        async def roll() -> None:
            if (at := await sup.restart_rolling(names)) is not None:
                halted.append(at)
        await self._queued(send, "restart --rolling", roll, names, halted_at=halted)

    async def _cmd_reload(self, request: Request, send: Send) -> None:
        if request.dry_run:
            await send(await self.d.reloads.dry_run())
            return
        try:
            await send(await self.d.reloads.request_and_wait())
        except Stopping as e:
            await send(Refusal(str(e)))

    async def _cmd_reexec(self, request: Request, send: Send) -> None:
        await reexec(self.d, send, request.trial_timeout)

    async def _cmd_upgrade(self, request: Request, send: Send) -> None:
        if self.d.cluster is not None and await self.d.cluster.upgrader.request(request, send):
            return  # refused without --node, or carried out on node N
        async def progress(line: str) -> None:
            try:
                await send(UpgradeProgress(line))
            except ConnectionError:  # the client went away: the upgrade goes on
                pass

        try:
            await send(await self.d.upgrades.request(request.python, request.allow_downtime,
                                                   request.dry_run, progress))
        except Stopping as e:
            await send(Refusal(str(e)))


def sharded_group_warnings(units: Mapping[str, Unit], names: list[str]) -> list[str]:
    """What stopping `names` means for each sharded group they belong to: the others keep the
    group's work going, or none is left running and the work stops."""
    warnings = []
    for group in sorted({g for n in names if (g := units[n].spec.group)}):
        stopped = [n for n in names if units[n].spec.group == group]
        others = [n for n, u in units.items() if u.spec.group == group and n not in names and u.wanted and not u.held]
        if others:
            warnings += [f"{n} is one member of the sharded group {group}: the others keep running "
                         f"({', '.join(others)}), and the work sharded to {n} waits until it runs again" for n in stopped]
            continue
        work = units[stopped[0]].spec.group_work or f"the work of {group} stops"
        who = (f"{stopped[0]} is the only running member" if len(stopped) == 1
               else f"{', '.join(stopped)} are all the running members")
        warnings.append(f"{who} of the sharded group {group}: {work} "
                        f"until {'it runs' if len(stopped) == 1 else 'one runs'} again")
    return warnings
