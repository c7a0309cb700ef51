"""``gather_in_window``: parts in order, at most so many at once, the first failure stops all
(no threads: coroutines on one event loop)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from tei_ort.serving.fanout import gather_in_window

pytestmark = pytest.mark.anyio


async def test_results_in_order_with_at_most_limit_running() -> None:
    running: list[int] = []
    most = 0
    started: list[int] = []

    def part(index: int, delay: float) -> Callable[[], Awaitable[int]]:
        async def run() -> int:
            nonlocal most
            started.append(index)
            running.append(index)
            most = max(most, len(running))
            await asyncio.sleep(delay)
            running.remove(index)
            return index * 10

        return run

    delays = [0.03, 0.0, 0.02, 0.0, 0.01, 0.0, 0.0]
    results = await gather_in_window([part(i, d) for i, d in enumerate(delays)], 3)
    assert results == [i * 10 for i in range(len(delays))]
    assert most == 3 and started == list(range(len(delays)))  # started in order
    assert await gather_in_window([], 3) == []


async def test_the_first_failure_cancels_those_running_and_starts_no_more() -> None:
    started: list[int] = []
    cancelled: list[int] = []

    def part(index: int) -> Callable[[], Awaitable[int]]:
        async def run() -> int:
            started.append(index)
            if index == 1:
                await asyncio.sleep(0.01)
                raise ValueError("instance 1 failed")
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.append(index)
                raise
            return index

        return run

    with pytest.raises(ValueError, match="instance 1"):
        await gather_in_window([part(i) for i in range(100)], 4)
    assert started == [0, 1, 2, 3]  # 4 at once, none started after the failure
    assert sorted(cancelled) == [0, 2, 3]  # each ran its cancellation before the raise
