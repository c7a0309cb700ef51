"""Running the parts of one request together: the first failure cancels the others.

A request that fans out (the instances of a /vertex body, the messages of a gRPC
RerankStream) is answered with its first failure. ``asyncio.gather`` alone would leave the
other parts running: their inputs would stay queued, holding concurrency permits that other
clients then miss (429), for work nobody will read. Here every part still running is
cancelled, and has run its cancellation (inputs withdrawn from the queue, permits given
back), before the failure reaches the caller.

``gather_in_window`` runs at most so many parts at once, in order: a /vertex body may hold
any number of instances (within --payload-limit), and a task per instance, all started at
once, would cost memory for parts that can only wait for permits anyway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


async def gather_or_cancel(works: Iterable[Awaitable[T]]) -> list[T]:
    """The results of ``works`` in order; on the first failure (or cancellation of the
    caller) cancel the rest, wait for them to stop, and raise."""
    tasks = [asyncio.ensure_future(work) for work in works]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        await cancel_all(tasks)


async def gather_in_window(
    works: Sequence[Callable[[], Awaitable[T]]],
    limit: int,
    ready: Callable[[int], Awaitable[object]] | None = None,
) -> list[T]:
    """The results of ``work()`` for each of ``works``, in order, at most ``limit`` running
    at once (the next starts when one ends, or as soon as ``ready(next)`` completes: a
    /vertex instance whose place in line was granted permits must not wait for a slot,
    or younger requests would queue their inputs before it); on the first failure (or
    cancellation of the caller) cancel those running, start no more, and raise."""
    running: dict[asyncio.Future[T], int] = {}
    done_at: dict[int, T] = {}
    started = 0
    watcher: asyncio.Future[object] | None = None  # ready(started)
    watched = -1

    def start() -> None:
        nonlocal started
        running[asyncio.ensure_future(works[started]())] = started
        started += 1

    try:
        while started < len(works) or running:
            while started < len(works) and len(running) < max(1, limit):
                start()
            waits: set[asyncio.Future[Any]] = set(running)
            if ready is not None and started < len(works):
                if watcher is not None and watched != started:  # that one started anyway
                    watcher.cancel()
                    watcher = None
                if watcher is None:
                    watcher, watched = asyncio.ensure_future(ready(started)), started
                waits.add(watcher)
            finished, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if watcher is not None and watcher in finished:
                finished.discard(watcher)
                watcher = None
                start()  # beyond the limit: its permits are waiting for it
            for task in finished:
                done_at[running[task]] = task.result()  # the first failure raises here
                del running[task]
        return [done_at[index] for index in range(len(works))]
    finally:
        if watcher is not None:
            watcher.cancel()
        await cancel_all(list(running))


async def cancel_all(tasks: Sequence[asyncio.Future[T]]) -> None:
    """Cancel ``tasks`` (those not done) and wait until each has stopped; their errors are
    consumed (the caller already has the one it reports)."""
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" at exit
