"""The daemon's signal wakeup socket does not report a full buffer (daemon.quiet_wakeup_fd): a
report is a pending call queued by CPython's C signal handler under a lock the interrupted
main thread may hold, and 500 units exiting together (one SIGCHLD byte each, 278 fill the
socket) deadlocked the daemon that way."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from synsup.supervisor.daemon.daemon import quiet_wakeup_fd


def reports_of_a_full_wakeup_socket(quiet: bool) -> tuple[int, list[BaseException]]:
    seen: list[BaseException] = []

    async def main() -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR2, lambda: None)
        if quiet:
            quiet_wakeup_fd(loop)
        sys.unraisablehook = lambda unraisable: seen.append(unraisable.exc_value)
        filled = 0
        try:
            while True:
                loop._csock.send(b"\0")  # what each signal writes, unread
                filled += 1
        except BlockingIOError:
            pass
        os.kill(os.getpid(), signal.SIGUSR2)
        for _ in range(10_000):  # pending calls run between bytecodes
            pass
        loop.remove_signal_handler(signal.SIGUSR2)
        return filled

    try:
        filled = asyncio.run(main())
    finally:
        sys.unraisablehook = sys.__unraisablehook__
    return filled, seen


def test_a_full_wakeup_socket_is_not_reported_so_no_pending_call_comes_from_the_signal_handler():
    filled, seen = reports_of_a_full_wakeup_socket(quiet=False)
    assert filled < 2000 and [type(e) for e in seen] == [BlockingIOError], "asyncio's own: reported"
    filled, seen = reports_of_a_full_wakeup_socket(quiet=True)
    assert seen == []


def test_signals_still_reach_their_handlers_after_it():
    async def main():
        loop = asyncio.get_running_loop()
        got = asyncio.Event()
        loop.add_signal_handler(signal.SIGUSR2, got.set)
        quiet_wakeup_fd(loop)
        os.kill(os.getpid(), signal.SIGUSR2)
        await asyncio.wait_for(got.wait(), 5)
        loop.remove_signal_handler(signal.SIGUSR2)
    asyncio.run(main())
