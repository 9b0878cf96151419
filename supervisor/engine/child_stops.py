"""Stops and continues of our children, learnt when SIGCHLD says something happened: a unit
without probes is checked for being stopped (SIGSTOP, SIGTSTP) without reading /proc on a timer.

`waitid(P_ALL, WSTOPPED | WCONTINUED | WNOHANG)` reports only stops and continues: without
WEXITED no exit status is taken from the pidfds and the reaper that own them."""

from __future__ import annotations

import os
from collections.abc import Callable

Listener = Callable[[bool], None]  # called with True when stopped, False when continued


class ChildStops:
    def __init__(self) -> None:
        self._listeners: dict[int, Listener] = {}

    def watch(self, pid: int, listener: Listener) -> None:
        self._listeners[pid] = listener

    def unwatch(self, pid: int) -> None:
        self._listeners.pop(pid, None)

    def collect(self) -> None:
        """On SIGCHLD: hand every pending stop or continue to the child's listener."""
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WSTOPPED | os.WCONTINUED | os.WNOHANG)
            except ChildProcessError:
                return
            if info is None or info.si_pid == 0:
                return
            listener = self._listeners.get(info.si_pid)
            if listener is not None:
                listener(info.si_code != os.CLD_CONTINUED)

    @property
    def watched(self) -> int:
        return len(self._listeners)


CHILD_STOPS = ChildStops()
