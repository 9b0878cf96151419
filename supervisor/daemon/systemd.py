"""Keeping systemd informed: notify messages, watchdog pings, and more start time while a slow unit
(Synapse's main, migrating the database) starts."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from ..engine.unit_state import UnitState

if TYPE_CHECKING:
    from ..engine.unit import Unit

DEFAULT_TIMEOUT_START = 90.0  # systemd's DefaultTimeoutStartSec
EXTENSION = 60.0
MIN_STATUS_INTERVAL = 1.0  # seconds between two STATUS= lines of unit changes


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Half of $WATCHDOG_USEC, when the watchdog is meant for this process."""
    environ = os.environ if environ is None else environ
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = environ.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 2e6


def start_timeout(environ: Mapping[str, str] | None = None) -> float:
    """systemd's TimeoutStartSec for this unit, as the unit file passes it on."""
    environ = os.environ if environ is None else environ
    try:
        return float(environ.get("SYNSUP_TIMEOUT_START_SEC", DEFAULT_TIMEOUT_START))
    except ValueError:
        return DEFAULT_TIMEOUT_START


async def watchdog(notifier: SystemdNotifier, interval: float) -> None:
    """WATCHDOG=1 every `interval`: sent from the event loop, so a stuck loop stops the pings."""
    while True:
        notifier.send(WATCHDOG=1)
        await asyncio.sleep(interval)


async def extend_start(notifier: SystemdNotifier, timeout: float, slow_start: Callable[[], str | None]) -> None:
    """After 80 % of the start timeout, ask for more time for as long as a unit whose start may
    take long is starting (`slow_start()` says which and why, e.g. main migrating the database)."""
    await asyncio.sleep(timeout * 0.8)
    while status := slow_start():
        notifier.send(EXTEND_TIMEOUT_USEC=int(EXTENSION * 1e6), STATUS=status)
        await asyncio.sleep(EXTENSION / 2)


def slow_start_pending(units: Iterable[Unit], starting: bool) -> str | None:
    """During the start, a unit whose spec says its start may take long (Synapse's main,
    migrating the database) has not come up yet: what systemd is told while it gets more time."""
    slow = [u for u in units if u.spec.slow_start and
            u.state in (UnitState.WAITING, UnitState.STARTING, UnitState.BACKOFF)]
    if not starting or not slow:
        return None
    return f"starting {slow[0].spec.name} ({slow[0].spec.slow_start})"


class SystemdNotifier:
    """Sends messages to $NOTIFY_SOCKET (abstract `@` addresses too); silent when unset."""

    def __init__(self, address: str | None, min_status_interval: float = MIN_STATUS_INTERVAL) -> None:
        self.address = address
        self.min_status_interval = min_status_interval
        self._status: str | None = None  # the STATUS= systemd shows
        self._status_at = float("-inf")
        self._pending: asyncio.TimerHandle | None = None  # a later STATUS= for changes that came too soon
        self._latest: str | Callable[[], str] | None = None  # what the pending STATUS= will say
        self._sock: socket.socket | None = None
        if address:
            # non-blocking: a stalled systemd must never freeze the event loop
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)

    @classmethod
    def from_environment(cls) -> SystemdNotifier:
        return cls(os.environ.get("NOTIFY_SOCKET"))

    def status(self, text: str | Callable[[], str]) -> None:
        """STATUS=text, only when it differs from what systemd shows, and at most once every
        `min_status_interval`: a burst of unit changes ends in one line with the latest text.
        `text` may be a function making it: called only when a line is due, not once a change
        (the daemon's line counts every unit: 500 units on each unit change was on the respawn path)."""
        if self._sock is None:
            return
        self._latest = text
        if self._pending is not None:
            return  # it sends the latest text when it fires
        wait = self._status_at + self.min_status_interval - time.monotonic()
        if wait <= 0:
            self._send_latest()
            return
        try:
            self._pending = asyncio.get_running_loop().call_later(wait, self._send_latest)
        except RuntimeError:
            self._send_latest()  # no event loop to send it later from

    def _send_latest(self) -> None:
        self._pending = None
        latest, self._latest = self._latest, None
        text = latest() if callable(latest) else latest
        if text is not None and text != self._status:
            self.send(STATUS=text)

    def _cancel_pending(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    def send(self, **fields: object) -> None:
        if self._sock is None or self.address is None:
            return
        if "STATUS" in fields:
            self._cancel_pending()
            self._status, self._status_at = str(fields["STATUS"]), time.monotonic()
        message = "\n".join(f"{k}={v}" for k, v in fields.items()).encode()
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            self._sock.sendto(message, target)
        except OSError:
            pass  # would block (advisory STATUS lines are dropped), or systemd is gone

    def close(self) -> None:
        self._cancel_pending()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
