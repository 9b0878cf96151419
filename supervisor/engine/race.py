"""A unit's wait for one thing, cut short by its stop, its process's exit or a timeout: the
race every step of a unit's task runs (its dependencies, its readiness, its liveness, a backoff)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable

from .flag import Flag


async def race(stop: Flag, work: Awaitable[object], exited: asyncio.Future[int | None] | None = None,
               timeout: float | None = None) -> str:
    """Run `work` until it is done, the child exits, a stop is asked for, or time runs out.
    One future, woken by whichever comes first: asyncio.wait holds a coroutine, two sets and a
    closure per future for as long as each of hundreds of units waits."""
    work_task = asyncio.ensure_future(work)
    stop_task = stop.waiter()  # a bare future: no task per race
    racers = (stop_task, work_task) if exited is None else (stop_task, exited, work_task)
    loop = asyncio.get_running_loop()
    first: asyncio.Future[None] = loop.create_future()
    wake = functools.partial(_wake, first)
    for racer in racers:
        racer.add_done_callback(wake)
    timer = loop.call_later(timeout, _wake, first, None) if timeout is not None else None
    try:
        await first
        stopped, ended, done = stop_task.done(), exited is not None and exited.done(), work_task.done()
    finally:
        if timer is not None:
            timer.cancel()
        for racer in racers:
            racer.remove_done_callback(wake)
        work_task.cancel()
        stop_task.cancel()
    if stopped:
        return "stop"
    if ended:
        return "exited"
    if done:
        work_task.result()
        return "done"
    return "timeout"


def _wake(first: asyncio.Future[None], _: object) -> None:
    if not first.done():
        first.set_result(None)
