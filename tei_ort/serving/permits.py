"""``--max-concurrent-requests``: one permit per input in flight."""

from __future__ import annotations

import asyncio
from collections import deque


class Permits:
    """``--max-concurrent-requests`` permits, used from the event loop only (FIFO waiters)."""

    def __init__(self, count: int) -> None:
        self.total = count
        self.free = count
        self._waiters: deque[asyncio.Future[None]] = deque()

    def try_acquire(self) -> bool:
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return True
        return False

    def take_up_to(self, count: int) -> int:
        """Take as many as are free right now, at most ``count``."""
        if self._waiters:
            return 0
        taken = min(count, self.free)
        self.free -= taken
        return taken

    async def acquire(self) -> None:
        if self.try_acquire():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # granted just as we were cancelled: give it back
            else:
                self._waiters.remove(waiter)
            raise

    def release(self, count: int = 1) -> None:
        self.free += count
        while self.free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.free -= 1
                waiter.set_result(None)
