"""The daemon: a Supervisor, its control socket, its signals, its records in the state dir.

Its last line of defence (gunicorn's arbiter is the model): whatever fails, every unit is
stopped in reverse order within a bounded time, every process it started is killed and
reaped, and units.json is kept while a recorded pid still lives."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import structlog

from ..daemon.systemd import SystemdNotifier
from ..engine.child_stops import CHILD_STOPS
from ..engine.health import Timing
from ..engine.log_dir import prepare_log_dir
from ..engine.process import REAPER, Spawner, become_subreaper, return_free_heap
from ..engine.supervisor import Supervisor, settled
from ..engine.unit import Unit
from ..engine.unit_output import KEEP_FILES, MAX_BYTES
from ..owner_mark import VARIABLE, owner_token
from ..plans import Action
from ..process_records import process_record
from ..protocol import StatusReply
from ..source import Loaded
from ..statedir import StateDir
from . import reexec, systemd
from .control_server import ControlServer
from .daemon_log import DaemonLog
from .front_door import FrontDoor
from .handlers import Requests
from .operations import Lifecycle, Operations, Phase
from .records import Records, adoptable, stale_adopted
from .reloads import Reloads
from .running_config import RunningConfig
from .status_report import status_line, status_reply
from .telemetry import Telemetry
from .upgrade_operation import Upgrader, Upgrades

if TYPE_CHECKING:  # the cluster package is imported only with --cluster (cli/cluster.py builds it)
    from .cluster_node import ClusterNode

STOP_MARGIN = 10.0  # seconds beyond the units' own stop timeouts before the daemon gives up waiting
LOG_UPKEEP_INTERVAL = 5.0  # seconds from a unit log's change to a look at its size (units write them)


def _raise_fd_limit() -> None:
    """Each unit holds a pipe, a pidfd and a notify socket: lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def quiet_wakeup_fd(loop: asyncio.AbstractEventLoop) -> None:
    """asyncio's signal wakeup socket, told not to report a full buffer (after the last
    add_signal_handler, which sets it anew). Each signal writes a byte to it, and 278 one-byte
    writes fill a socketpair: 500 units exiting together while the loop is busy do. A full
    buffer was reported by a pending call that CPython 3.11's C signal handler queues under a
    lock the interrupted thread may hold (it pops its pending calls under it): a SIGCHLD then
    deadlocked the daemon for good, seen stopping 500 HTTP-probed bench units. Unreported, the
    byte is dropped: SIGCHLD's work (reap, stops) is done for every child by one byte."""
    fd = getattr(loop, "_csock", None)
    try:
        signal.set_wakeup_fd(fd.fileno() if fd is not None else signal.set_wakeup_fd(-1), warn_on_full_buffer=False)
    except (ValueError, OSError):  # not the main thread, or a loop without a wakeup socket
        pass


class Daemon:
    def __init__(self, loaded: Loaded, state: StateDir, log_dir: str,
                 reloader: Callable[[], Loaded] | None = None,
                 planner: Callable[[Loaded, Loaded], list[Action]] | None = None,
                 timing: Timing | None = None, notifier: SystemdNotifier | None = None,
                 spawner: Spawner | None = None, stop_trigger: Callable[[], Awaitable[None]] | None = None,
                 watch: bool = True, settle: float = 1.0, telemetry: Telemetry | None = None,
                 daemon_log: DaemonLog | None = None, log_rotation: tuple[int, int] = (MAX_BYTES, KEEP_FILES),
                 upgrader: Upgrader | None = None, cluster: ClusterNode | None = None,
                 front_door: FrontDoor | None = None) -> None:
        self.front_door = front_door  # --proxy: the reverse proxy kept in step with the units
        self.daemon_log, self.log_rotation = daemon_log, log_rotation
        self.cluster = cluster  # --cluster: this node in the store (units, changes across nodes), joined first, left last
        self.state, self.log_dir = state, log_dir
        self.current = loaded
        self.timing, self.watch = timing, watch
        self.spawner = spawner or Spawner()
        self.notifier = notifier or SystemdNotifier(None)
        self.lifecycle = Lifecycle(front_door.phase_changed if front_door else None)
        self.operations = Operations()
        self.running = RunningConfig(state)  # which config and which code each unit runs with
        self.reloads: Reloads = Reloads(self, reloader, planner, settle)
        self.upgrades: Upgrades = Upgrades(self, upgrader)
        self.records = Records(state)
        self.telemetry = telemetry or Telemetry()  # metrics, resource columns, failure hooks
        self.supervisor: Supervisor | None = None
        self.token = ""  # this state dir's owner token (`owner_mark`), read at run
        self.adopted: dict[str, int] = {}  # unit -> pid of each process the start took over from an earlier daemon
        self.control_fd: int | None = None  # the listening control socket (passed on by `reexec`)
        self.image_started_at = time.time()  # this image's start (a `reexec` makes a new one)
        self._stop = asyncio.Event()
        self._stopped = asyncio.Event()  # set once every unit is stopped: `stopped()`
        self._stop_trigger = stop_trigger
        self.log = structlog.get_logger()

    # -- lifecycle
    async def run(self) -> int:
        _raise_fd_limit()
        become_subreaper()
        self.state.create()
        os.environ.pop(VARIABLE, None)  # a daemon started from inside a unit is not that unit
        self.token = self.spawner.token = REAPER.token = owner_token(self.state)
        REAPER.session = os.getsid(0)
        self.log_dir = prepare_log_dir(self.log_dir)
        self.records.write_daemon({**(process_record(os.getpid()) or {}), "log_dir": self.log_dir})
        self.records.write_log_dir(self.log_dir)
        max_bytes, backups = self.log_rotation
        specs = self.running.first_specs(self.current)
        sup = self.supervisor = Supervisor(specs, log_dir=self.log_dir, notify_dir=self.state.notify_dir,
                                           log_max_bytes=max_bytes, log_backups=backups,
                                           timing=self.timing, spawner=self.spawner)
        sup.add_listener(self._unit_changed)
        if self.front_door is not None:
            self.front_door.attach(self)
        if self.cluster is not None:
            await self.cluster.start(self)  # a store that does not answer ends the start here, nothing started
        await self.telemetry.start(self)  # before the socket: a busy --metrics address ends the start here
        passed = reexec.inherited()  # we are a new image of a daemon that re-executed itself
        if passed is not None:
            self._take_over(sup, passed)
        server = ControlServer(self.state.socket, Requests(self).handle)
        await server.start(passed.control_fd if passed is not None else None)
        self.control_fd = server.fileno
        self._install_signals()
        self.log.info("daemon.started", pid=os.getpid(), units=len(sup.units))
        door = asyncio.ensure_future(self._guarded("front door", self.front_door.run)) if self.front_door else None
        try:
            async with asyncio.TaskGroup() as units:
                sup.spawn_tasks(units)
                try:
                    await self._serve()
                except Exception:
                    self.log.exception("daemon.crashed")  # the last line of defence: stop all below
                finally:
                    await self._shutdown(sup)
        finally:
            if door is not None and self.front_door is not None:
                await self.front_door.close()  # after the shutdown: units going down are told to the proxy
                door.cancel()
            self._stopped.set()
            self.telemetry.close()
            server.close()
            REAPER.kill_all()
            sup.close()
            self.records.finish(sup)
            if self.cluster is not None:
                await self.cluster.close()  # last: the member key goes once every unit is down
            self.log.info("daemon.stopped")
        return 0

    def _take_over(self, sup: Supervisor, passed: reexec.Inherited) -> None:
        """What the previous image knew that the records do not say: held units, pause."""
        for name in passed.held:
            if name in sup.units:
                sup.units[name].held = True
        if passed.paused:
            sup.unpaused.clear()
        self.log.info("daemon.reexecuted", held=list(passed.held), paused=passed.paused)

    async def _serve(self) -> None:
        helpers = [asyncio.ensure_future(self.operations.run()), *self._systemd_tasks()]
        if self.watch and self.reloads.enabled:
            helpers.append(asyncio.ensure_future(self._guarded("watch", self.reloads.watch)))
        helpers.append(asyncio.ensure_future(self._guarded("log upkeep", self._log_upkeep)))
        self.operations.submit("start", self._initial_start)
        if self.cluster is not None:
            self.cluster.follow()  # its plan steps queue behind the start
        try:
            await (self._stop_trigger() if self._stop_trigger else self._stop.wait())
        finally:
            for task in helpers:
                task.cancel()

    async def _guarded(self, name: str, work: Callable[[], Awaitable[None]]) -> None:
        """A helper task that fails is logged and started again, never fatal."""
        while True:
            try:
                await work()
            except Exception:
                self.log.exception("daemon.helper_failed", helper=name)
            await asyncio.sleep(1.0)

    async def _log_upkeep(self) -> None:
        if self.supervisor is not None:
            await self.supervisor.keep_logs(LOG_UPKEEP_INTERVAL)

    async def _initial_start(self) -> None:
        sup = self.supervisor
        assert sup is not None
        self.notifier.send(STATUS="starting")
        specs = [self.running.code.put_on(s) for s in self.current.specs]  # a partial upgrade's units: new code
        found = adoptable(self.state, specs, self.token)
        stale = stale_adopted(self.state, found, {n: u.spec for n, u in sup.units.items()})
        later = self.cluster.acted_on_later if self.cluster is not None else set()
        stale = {n: why for n, why in stale.items() if n not in later}  # the plan in progress stops or restarts them
        if stale:  # stopped before anything starts: no process of the new config runs beside them
            self.log.info("daemon.not_adopted", units=stale, reason="config files changed while no daemon ran")
            await sup.retire({n: found[n] for n in stale}, self.token)
        adopted = sup.adopt({n: pid for n, pid in found.items() if n not in stale}, self.token)
        if adopted:
            self.log.info("daemon.adopted", units=adopted)
        self.adopted = {n: found[n] for n in adopted}
        for name in later - set(adopted):  # not running: started by the plan's step, not before
            sup.units[name].held = True
        self.running.prune(u.spec for u in sup.units.values())  # the copies nothing reads any more
        sup.start_all()
        # a stand-in is another node's business: waited for here, it would keep this node's plan
        # steps (queued behind the start) from the phase that starts its unit (issue 18)
        await sup.wait_settled(u for u in sup.units.values() if not u.spec.reported)
        self.settle()
        return_free_heap()  # the start's peak is past: 500 units, 0.8 MB of RSS
        self.log.info("daemon.ready", units=len(sup.units), all_ready=sup.all_ready())
        self.notifier.send(READY=1, STATUS=self.status_line())

    async def _shutdown(self, sup: Supervisor) -> None:
        self.operations.preempt()
        if not self.lifecycle.stopping:
            self.lifecycle.move(Phase.STOPPING)
        self.notifier.send(STOPPING=1, STATUS="stopping")
        bound = sum(max(u.spec.stop_timeout for u in step) for step in sup.steps() if step) + STOP_MARGIN
        try:
            async with asyncio.timeout(bound):
                await sup.stop_all()
        except TimeoutError:
            self.log.error("daemon.stop_timeout", after=bound)
        sup.cancel_tasks()
        self.lifecycle.move(Phase.STOPPED)

    def request_stop(self) -> None:
        if not self._stop.is_set():
            self.log.info("daemon.stop_requested")
            self.operations.preempt()
            if not self.lifecycle.stopping:
                self.lifecycle.move(Phase.STOPPING)
            self._stop.set()

    def settle(self, changed: Unit | None = None) -> None:
        """running or degraded, after an operation or on a unit change while none runs (a unit
        that went down says degraded at once: no look at every unit on the respawn path)."""
        if self.supervisor is not None:
            self.lifecycle.settle((changed is None or settled(changed)) and self.supervisor.all_ready())

    def _systemd_tasks(self) -> list[asyncio.Future]:
        if self.notifier.address is None:
            return []
        extend = systemd.extend_start(self.notifier, systemd.start_timeout(), self._slow_start_pending)
        tasks: list[asyncio.Future] = [asyncio.ensure_future(extend)]
        interval = systemd.watchdog_interval()
        if interval:
            tasks.append(asyncio.ensure_future(systemd.watchdog(self.notifier, interval)))
        return tasks

    def _slow_start_pending(self) -> str | None:
        starting = self.lifecycle.phase is Phase.STARTING
        return systemd.slow_start_pending(self.supervisor.units.values() if self.supervisor else (), starting)

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.reloads.request)
        loop.add_signal_handler(signal.SIGCHLD, self._on_sigchld)
        loop.add_signal_handler(signal.SIGUSR1, self.reopen_logs)
        quiet_wakeup_fd(loop)

    async def stopped(self) -> None:
        """Wait until the daemon has stopped every unit."""
        await self._stopped.wait()

    def has_stopped(self) -> bool:
        return self._stopped.is_set()

    def stop_order(self) -> list[str]:
        return self.supervisor.stop_order() if self.supervisor else []

    @staticmethod
    def _on_sigchld() -> None:
        REAPER.reap_soon()
        CHILD_STOPS.collect()  # a unit without probes that stopped (SIGSTOP) or continued

    def hand_over(self) -> None:
        """Before `reexec`'s exec in place: units.json written for the new image to adopt
        from; the failure hooks' commands let go."""
        assert self.supervisor is not None
        for unit in self.supervisor.units.values():
            # a crash restart forked in this turn is in no record: the new image would neither
            # adopt nor kill it (it starts the unit anew; a half-started process is no adoptee)
            unit.withdraw_prespawned()
        self.records.write_units(self.supervisor)
        self.telemetry.hooks.close()

    def reopen_logs(self) -> None:
        """After a rename-style logrotate: unit logs and daemon.log are opened at their paths anew."""
        if self.supervisor is not None:
            self.supervisor.reopen_logs()
        if self.daemon_log is not None:
            try:
                self.daemon_log.reopen()
            except OSError as e:
                self.log.error("daemon.reopen_failed", error=str(e))
        self.log.info("daemon.logs_reopened")

    def status_line(self) -> str:
        """systemd's STATUS=: how many units are ready, the first few that are not."""
        return status_line(list(self.supervisor.units.values()) if self.supervisor else [])

    def _unit_changed(self, unit: Unit) -> None:
        if self.notifier.address:
            self.notifier.status(self.status_line)
        if self.operations.current is None and not self.lifecycle.stopping:
            self.settle(unit)
        if self.supervisor is not None:
            self.records.changed(self.supervisor, unit.spec.name)

    # -- requests
    def status_reply(self, names: list[str] | None = None) -> StatusReply:
        """The daemon and its units (those named, else all), as `status` answers."""
        return status_reply(self, names)

    def status(self, names: list[str] | None = None) -> dict[str, Any]:
        """The status reply's JSON."""
        return self.status_reply(names).as_json()

    def pause(self) -> None:
        """No automatic restarts and no reloads until resume() (`synsup pause`)."""
        assert self.supervisor is not None
        self.supervisor.unpaused.clear()
        self.log.warning("daemon.paused")
        self.notifier.send(STATUS="PAUSED: no automatic restarts, no reloads; " + self.status_line())

    def resume(self) -> None:
        """Automatic restarts again; a reload the pause held back is made now."""
        assert self.supervisor is not None
        self.supervisor.unpaused.set()
        self.log.info("daemon.resumed")
        self.notifier.status(self.status_line)
        self.reloads.resume()

    @property
    def paused(self) -> bool:
        return self.supervisor is not None and not self.supervisor.unpaused.is_set()
