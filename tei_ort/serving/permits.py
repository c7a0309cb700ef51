"""``--max-concurrent-requests``: one permit per input in flight, handed out in arrival order.

A request of one input takes its permit at once or is refused (429), as TEI does. Any other
request takes a place in line (a ``Claim``) when it arrives: permits that free up go to the
oldest claim until it has all it needs, and only then to the next. Its owner queues inputs
as permits come (a request larger than the pool runs in chunks), so the batcher's FIFO sees
requests one after another in arrival order and the k-th request of a backlog finishes
after about k/N of it. Handing freed permits to the inputs of several waiting requests at
once (issue #26) made most requests wait for most of the backlog.

Granted permits are also *taken* (turned into queued inputs) in grant order: a claim may
take its permits only when no older claim still holds granted ones. Without that, a
younger request already tokenized and woken would queue its inputs before an older one
whose owner was a few steps from taking (a /vertex instance just starting, a long request
still in the tokenizer).

``PermitLine`` is the rule: plain data, no event loop, no lock (the tests step it by hand).
``Permits`` is the event loop's view of it: it wakes the claim whose turn it is to take.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque


class Claim:
    """One request's place in line: ``need`` permits still to come, ``granted`` come but
    not yet taken, ``arrived`` (monotonic seconds) for ``--max-queue-wait``; ``ordered``:
    takes in grant order (False for a single input's permit, taken at once)."""

    __slots__ = ("arrived", "granted", "need", "ordered", "size")

    def __init__(self, need: int, arrived: float, granted: int = 0) -> None:
        self.size = need + granted  # permits this claim stands for in all
        self.need = need
        self.granted = granted
        self.arrived = arrived
        self.ordered = granted == 0

    def __repr__(self) -> str:
        return f"Claim(size={self.size}, need={self.need}, granted={self.granted})"


class PermitLine:
    """The permits, the line of claims waiting for them and the claims holding granted
    permits not yet taken (both oldest first).

    Invariant: a free permit means nobody waits (every release goes to the line first).
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.free = total
        # claims that left stay in these deques until they reach the head (need / granted
        # 0 by then): removing them at once would scan the line, once per instance of a
        # huge /vertex body
        self._line: deque[Claim] = deque()
        self._untaken: deque[Claim] = deque()
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

    def may_take(self, claim: Claim) -> bool:
        """Whether ``claim`` holds granted permits and no older claim holds any."""
        if not claim.granted:
            return False
        return not claim.ordered or self.next_to_take() is claim

    def next_to_take(self) -> Claim | None:
        """The oldest claim holding granted permits (whose turn it is to take them)."""
        untaken = self._untaken
        while untaken and not untaken[0].granted:
            untaken.popleft()
        return untaken[0] if untaken else None

    def take(self, claim: Claim) -> int:
        """The permits granted to ``claim`` since it last took them: now its owner's
        (``may_take`` first: taken out of turn, they would queue before older ones)."""
        count, claim.granted = claim.granted, 0
        return count

    def release(self, count: int) -> None:
        """Give ``count`` permits back (to the line first)."""
        self.free += count
        self._grant()

    def leave(self, claim: Claim) -> None:
        """``claim`` gives up its place and the permits granted but not taken (idempotent)."""
        if claim.need:
            claim.need = 0  # passed over when it reaches the head of the line
            self._waiting -= 1
        returned, claim.granted = claim.granted, 0
        self.free += returned
        self._grant()

    def _grant(self) -> None:
        line = self._line
        while line and not line[0].need:  # claims that left
            line.popleft()
        while self.free and line:
            head = line[0]
            given = min(self.free, head.need)
            if not head.granted:
                self._untaken.append(head)
            head.need -= given
            head.granted += given
            self.free -= given
            if not head.need:
                line.popleft()
                self._waiting -= 1
            while line and not line[0].need:
                line.popleft()


class Permits:
    """The ``PermitLine`` of one model, used from the event loop only."""

    def __init__(self, count: int) -> None:
        self._line = PermitLine(count)
        self._waiters: dict[Claim, list[asyncio.Future[None]]] = {}

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
        claim = self._line.join(size, time.monotonic())
        self._wake()
        return claim

    def claims(self, sizes: list[int]) -> list[Claim]:
        """Places next to each other, in order: the parts of one request (a /vertex body's
        instances) are admitted together, at the request's arrival."""
        now = time.monotonic()
        claims = [self._line.join(size, now) for size in sizes]
        self._wake()
        return claims

    def take(self, claim: Claim) -> int:
        """``claim``'s granted permits (after ``wait`` said it may take them)."""
        count = self._line.take(claim)
        self._wake()
        return count

    async def wait(self, claim: Claim, deadline: float | None = None) -> bool:
        """Until ``claim`` may take permits (True: granted, and no older claim holds any)
        or ``deadline`` (monotonic) passes or it can get none (False). Several may wait on
        one claim (a /vertex body watches the place of its next instance to start it)."""
        loop = asyncio.get_running_loop()
        while not self._line.may_take(claim):
            if not claim.need and not claim.granted:
                return False  # left the line, or all taken
            timeout = None if deadline is None else deadline - time.monotonic()
            if timeout is not None and timeout <= 0:
                return False
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(claim, []).append(waiter)
            try:
                await asyncio.wait((waiter,), timeout=timeout)
            finally:
                waiters = self._waiters.get(claim, [])
                if waiter in waiters:  # not woken (a wake takes the claim's whole list)
                    waiters.remove(waiter)
                    if not waiters:
                        del self._waiters[claim]
        return True

    def release(self, count: int = 1) -> None:
        self._line.release(count)
        self._wake()

    def leave(self, claim: Claim) -> None:
        self._line.leave(claim)
        self._wake()

    def _wake(self) -> None:
        """Wake whoever waits on the claim whose turn it is to take."""
        claim = self._line.next_to_take()
        if claim is None:
            return
        for waiter in self._waiters.pop(claim, ()):
            if not waiter.done():
                waiter.set_result(None)
