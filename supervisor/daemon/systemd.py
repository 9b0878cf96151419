"""Keeping systemd informed: notify messages, watchdog pings, and more start time while a slow unit
(Synapse's main, migrating the database) starts."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Mapping

DEFAULT_TIMEOUT_START = 90.0  # systemd's DefaultTimeoutStartSec
EXTENSION = 60.0


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


class SystemdNotifier:
    """Sends messages to $NOTIFY_SOCKET (abstract `@` addresses too); silent when unset."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._sock: socket.socket | None = None
        if address:
            # non-blocking: a stalled systemd must never freeze the event loop
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)

    @classmethod
    def from_environment(cls) -> SystemdNotifier:
        return cls(os.environ.get("NOTIFY_SOCKET"))

    def send(self, **fields: object) -> None:
        if self._sock is None or self.address is None:
            return
        message = "\n".join(f"{k}={v}" for k, v in fields.items()).encode()
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            self._sock.sendto(message, target)
        except OSError:
            pass  # would block (advisory STATUS lines are dropped), or systemd is gone

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
