"""``--max-concurrent-requests``: one permit per input in flight, handed out in arrival order.

A request of one input takes its permit at once or is refused (429), as TEI does. Any other
request takes a place in line (a ``Claim``) when it arrives: permits that free up go to the
oldest claim until it has all it needs, and only then to the next. Its owner queues inputs
as permits come (a request larger than the pool runs in chunks), so the batcher's FIFO sees
requests one after another in arrival order and the k-th request of a backlog finishes
after about k/N of it. Handing freed permits to the inputs of several waiting requests at
once (issue #26) made most requests wait for most of the backlog.

``PermitLine`` is the rule: plain data, no event loop, no lock (the tests step it by hand).
``Permits`` is the event loop's view of it: it wakes the claims that were granted permits.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque


class Claim:
    """One request's place in line: ``need`` permits still to come, ``granted`` come but
    not yet taken, ``arrived`` (monotonic seconds) for ``--max-queue-wait``."""

    __slots__ = ("arrived", "granted", "need", "size")

    def __init__(self, need: int, arrived: float, granted: int = 0) -> None:
        self.size = need + granted  # permits this claim stands for in all
        self.need = need
        self.granted = granted
        self.arrived = arrived

    def __repr__(self) -> str:
        return f"Claim(size={self.size}, need={self.need}, granted={self.granted})"


class PermitLine:
    """The permits and the line of claims waiting for them (oldest first).

    Invariant: a free permit means nobody waits (every release goes to the line first).
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.free = total
        # claims that left stay in the deque (need 0) until they reach its head: removing
        # them at once would scan the line, once per instance of a huge /vertex body
        self._line: deque[Claim] = deque()
        self._waiting = 0

    def __len__(self) -> int:
        """Claims still waiting for permits."""
        return self._waiting

    def try_claim(self, size: int, now: float = 0.0) -> Claim | None:
        """All ``size`` permits now (a single input, TEI's immediate 429), else None."""
        if self._waiting or self.free < size:
            return None
        self.free -= size
        return Claim(0, now, granted=size)

    def join(self, size: int, now: float = 0.0) -> Claim:
        """A place at the end of the line for ``size`` permits (granted now if free)."""
        claim = Claim(size, now)
        if size:
            self._line.append(claim)
            self._waiting += 1
            self._grant()
        return claim

    def take(self, claim: Claim) -> int:
        """The permits granted to ``claim`` since it last took them: now its owner's."""
        count, claim.granted = claim.granted, 0
        return count

    def release(self, count: int) -> list[Claim]:
        """Give ``count`` permits back; returns the claims that were granted some."""
        self.free += count
        return self._grant()

    def leave(self, claim: Claim) -> list[Claim]:
        """``claim`` gives up its place and the permits granted but not taken (idempotent);
        returns the claims that were granted them."""
        if claim.need:
            claim.need = 0  # skipped when it reaches the head of the line
            self._waiting -= 1
        returned, claim.granted = claim.granted, 0
        self.free += returned
        return self._grant()

    def _grant(self) -> list[Claim]:
        granted: list[Claim] = []
        line = self._line
        while line and not line[0].need:  # claims that left
            line.popleft()
        while self.free and line:
            head = line[0]
            given = min(self.free, head.need)
            head.need -= given
            head.granted += given
            self.free -= given
            granted.append(head)
            if not head.need:
                line.popleft()
                self._waiting -= 1
            while line and not line[0].need:
                line.popleft()
        return granted


class Permits:
    """The ``PermitLine`` of one model, used from the event loop only."""

    def __init__(self, count: int) -> None:
        self._line = PermitLine(count)
        self._waiters: dict[Claim, asyncio.Future[None]] = {}

    @property
    def total(self) -> int:
        return self._line.total

    @property
    def free(self) -> int:
        return self._line.free

    @property
    def waiting(self) -> int:
        """Requests waiting for permits."""
        return len(self._line)

    def try_claim(self, size: int = 1) -> Claim | None:
        return self._line.try_claim(size, time.monotonic())

    def claim(self, size: int) -> Claim:
        return self._line.join(size, time.monotonic())

    def claims(self, sizes: list[int]) -> list[Claim]:
        """Places next to each other, in order: the parts of one request (a /vertex body's
        instances) are admitted together, at the request's arrival."""
        now = time.monotonic()
        return [self._line.join(size, now) for size in sizes]

    def take(self, claim: Claim) -> int:
        return self._line.take(claim)

    async def wait(self, claim: Claim, deadline: float | None = None) -> bool:
        """Until ``claim`` has permits to take (True) or ``deadline`` (monotonic) passes
        (False: it still has none)."""
        if claim.granted or not claim.need:
            return claim.granted > 0
        timeout = None if deadline is None else deadline - time.monotonic()
        if timeout is not None and timeout <= 0:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[claim] = waiter
        try:
            await asyncio.wait((waiter,), timeout=timeout)
        finally:
            self._waiters.pop(claim, None)
        return claim.granted > 0

    def release(self, count: int = 1) -> None:
        self._wake(self._line.release(count))

    def leave(self, claim: Claim) -> None:
        self._wake(self._line.leave(claim))

    def _wake(self, claims: list[Claim]) -> None:
        for claim in claims:
            waiter = self._waiters.get(claim)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
