"""Flag: asyncio.Event's set/clear/is_set/wait in a fraction of its memory.

An asyncio.Event holds a deque from birth (about 600 bytes with nobody waiting) and a dict of
attributes; a unit has eight of them, so 500 units carried 3 MB of empty deques. A Flag keeps a
list of waiters made on the first wait. `waiter()` hands out a bare future, so a wait raced
against others needs no task of its own."""

from __future__ import annotations

import asyncio


class Flag:
    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[bool]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(True)

    def clear(self) -> None:
        self._set = False

    def waiter(self) -> asyncio.Future[bool]:
        """A future done once the flag is set (already done if it is); cancel it to stop waiting."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if self._set:
            future.set_result(True)
            return future
        if self._waiters is None:
            self._waiters = []
        else:  # waits given up (cancelled, or raced and lost) leave with the next one
            self._waiters = [w for w in self._waiters if not w.done()]
        self._waiters.append(future)
        return future

    async def wait(self) -> bool:
        if self._set:
            return True
        future = self.waiter()
        try:
            return await future
        finally:
            future.cancel()  # a no-op when set; otherwise pruned at the next wait
