"""The FIFO queue: budgeted batches, dropped clients, discarded entries."""

from __future__ import annotations

import threading
import time

import numpy as np

from tei_ort.model.tokenization import Encoded
from tei_ort.serving.metrics import Metrics
from tei_ort.serving.postprocess import Mode, OutputSpec
from tei_ort.serving.queue import Budget, Entry, Queue, Ticket


def entry(ticket: Ticket, index: int, length: int) -> Entry:
    ids = np.arange(length, dtype=np.int64)
    return Entry(ticket, index, Encoded(ids, np.zeros_like(ids)))


def ticket(size: int = 1) -> Ticket:
    return Ticket(size, OutputSpec(Mode.POOLED), None)


def test_batches_follow_the_budget_in_order() -> None:
    metrics = Metrics()
    queue = Queue(Budget(max_batch_tokens=64), metrics)
    t = ticket(5)
    queue.append([entry(t, i, n) for i, n in enumerate([10, 12, 16, 5, 30])])
    assert "te_queue_size 5\n" in metrics.render().decode() and len(queue) == 5
    first = queue.next_batch(timeout=0)
    assert first is not None and [e.index for e in first] == [0, 1, 2, 3]
    second = queue.next_batch(timeout=0)
    assert second is not None and [e.index for e in second] == [4]
    assert queue.next_batch(timeout=0) is None
    assert "te_queue_size 0\n" in metrics.render().decode()


def test_max_batch_requests() -> None:
    queue = Queue(Budget(max_batch_tokens=10_000, max_batch_requests=2), Metrics())
    t = ticket(3)
    queue.append([entry(t, i, 3) for i in range(3)])
    batch = queue.next_batch(timeout=0)
    assert batch is not None and len(batch) == 2


def test_dropped_entries_are_counted_and_discarded() -> None:
    metrics = Metrics()
    discarded: list[Entry] = []
    queue = Queue(Budget(max_batch_tokens=1000), metrics, discard=discarded.extend)
    gone, failed, kept = ticket(2), ticket(1), ticket(1)
    queue.append([entry(gone, 0, 4), entry(failed, 0, 4), entry(gone, 1, 4), entry(kept, 0, 4)])
    gone.dropped = gone.finished = True
    failed.finished = True  # already answered with an error: discarded, not "dropped"
    batch = queue.next_batch(timeout=0)
    assert batch is not None and [e.ticket for e in batch] == [kept]
    assert len(discarded) == 3
    assert 'te_request_failure{err="dropped"} 2\n' in metrics.render().decode()


def test_next_batch_blocks_until_an_append() -> None:
    queue = Queue(Budget(max_batch_tokens=100), Metrics())
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(queue.next_batch(timeout=5)))
    thread.start()
    _until_waiting(queue)
    assert result == []  # blocked in next_batch, not returned
    queue.append([entry(ticket(), 0, 3)])
    thread.join(5)
    assert isinstance(result[0], list) and len(result[0]) == 1


def _until_waiting(queue: Queue) -> None:
    """Until a thread waits on the queue's condition (CPython's Condition keeps its
    waiters), so that the append comes after the wait began, not before."""
    deadline = time.monotonic() + 5
    while not queue._cond._waiters:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "next_batch did not wait"
        time.sleep(0.001)


def test_close_wakes_the_batcher_and_returns_leftovers() -> None:
    queue = Queue(Budget(max_batch_tokens=100), Metrics())
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(queue.next_batch()))
    thread.start()
    left = queue.close()
    thread.join(5)
    assert result == [None] and left == []
    queue2 = Queue(Budget(max_batch_tokens=100), Metrics())
    queue2.append([entry(ticket(), 0, 3)])
    assert len(queue2.close()) == 1
