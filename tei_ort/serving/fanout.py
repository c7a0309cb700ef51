"""Running the parts of one request together: the first failure cancels the others.

A request that fans out (the instances of a /vertex body, the messages of a gRPC
RerankStream) is answered with its first failure. ``asyncio.gather`` alone would leave the
other parts running: their inputs would stay queued, holding concurrency permits that other
clients then miss (429), for work nobody will read. Here every part still running is
cancelled, and has run its cancellation (inputs withdrawn from the queue, permits given
back), before the failure reaches the caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")


async def gather_or_cancel(works: Iterable[Awaitable[T]]) -> list[T]:
    """The results of ``works`` in order; on the first failure (or cancellation of the
    caller) cancel the rest, wait for them to stop, and raise."""
    tasks = [asyncio.ensure_future(work) for work in works]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        await cancel_all(tasks)


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
