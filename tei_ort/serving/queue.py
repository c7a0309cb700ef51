"""The FIFO of tokenized inputs waiting for a batch, shared by the event loop and the batcher.

The event loop appends entries; the batcher thread takes the next batch under the budget
(``batching.plan_batch``). Entries whose client went away are dropped when the batcher
reaches them and counted as ``te_request_failure{err="dropped"}``; entries of requests
that already failed are discarded silently. Every removed entry is handed to ``discard``
so that its concurrency permit is given back.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tei_ort.model.tokenization import Encoded
from tei_ort.serving.batching import BUCKET_MULTIPLE, plan_batch
from tei_ort.serving.metrics import Metrics
from tei_ort.serving.postprocess import OutputSpec


class Ticket:
    """One request's stake in the queue: its entries' results, in input order.

    Owned by the event loop, except the two flags the batcher thread reads.
    """

    __slots__ = (
        "dropped",
        "finished",
        "future",
        "inference_time",
        "queue_time",
        "remaining",
        "results",
        "spec",
        "tokens",
    )

    def __init__(self, size: int, spec: OutputSpec, future: Any) -> None:
        self.spec = spec
        self.future = future  # asyncio.Future[None], resolved when every entry is answered
        self.results: list[Any] = [None] * size
        self.remaining = size
        self.tokens = 0
        self.queue_time = 0.0  # summed over entries
        self.inference_time = 0.0  # summed over entries
        self.dropped = False  # the client went away: its queued entries are dropped
        self.finished = False  # answered or failed: nothing more to do


@dataclass(eq=False)
class Entry:
    ticket: Ticket
    index: int  # position of this input in its request
    encoded: Encoded
    queued_at: float = field(default_factory=time.perf_counter)

    @property
    def length(self) -> int:
        return len(self.encoded)


@dataclass(frozen=True)
class Budget:
    """The batcher's limits (see batching.plan_batch)."""

    max_batch_tokens: int
    max_batch_requests: int | None = None
    max_length: int | None = None  # caps the padded bucket
    multiple: int = BUCKET_MULTIPLE  # padded lengths are multiples of this


class Queue:
    """A thread-safe FIFO of entries with a blocking ``next_batch``."""

    def __init__(
        self,
        budget: Budget,
        metrics: Metrics,
        discard: Callable[[list[Entry]], None] = lambda entries: None,
    ) -> None:
        self.budget = budget
        self._metrics = metrics
        self._discard = discard
        self._entries: deque[Entry] = deque()
        self._cond = threading.Condition()
        self._closed = False

    def __len__(self) -> int:
        return len(self._entries)

    def append(self, entries: list[Entry]) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("the queue is closed")
            self._entries.extend(entries)
            self._metrics.queue_size.set(len(self._entries))
            self._cond.notify()

    def close(self) -> list[Entry]:
        """Stop: wake the batcher and return what was still queued."""
        with self._cond:
            self._closed = True
            left = list(self._entries)
            self._entries.clear()
            self._metrics.queue_size.set(0)
            self._cond.notify_all()
        return left

    def withdraw(self) -> None:
        """Remove now the entries of requests that were dropped or failed (the batcher would
        only reach them at its next batch), so that their permits come back at once."""
        with self._cond:
            self._purge()

    def next_batch(self, timeout: float | None = None) -> list[Entry] | None:
        """Block until entries wait, then take the next batch (None: closed or timed out)."""
        with self._cond:
            while True:
                self._purge()
                if self._entries:
                    break
                if self._closed or not self._cond.wait(timeout):
                    return None
                if self._closed:
                    return None
            count, _ = plan_batch(
                self._lengths(),
                max_batch_tokens=self.budget.max_batch_tokens,
                max_batch_requests=self.budget.max_batch_requests,
                multiple=self.budget.multiple,
                cap=self.budget.max_length,
            )
            batch = [self._entries.popleft() for _ in range(count)]
            self._metrics.queue_size.set(len(self._entries))
        return batch

    def _lengths(self) -> Iterator[int]:
        for entry in self._entries:
            yield entry.length

    def _purge(self) -> None:
        """Remove entries of requests that were dropped or already failed (lock held)."""
        if not any(e.ticket.dropped or e.ticket.finished for e in self._entries):
            return
        keep: deque[Entry] = deque()
        gone: list[Entry] = []
        dropped = 0
        for entry in self._entries:
            ticket = entry.ticket
            if ticket.dropped or ticket.finished:
                gone.append(entry)
                dropped += ticket.dropped
            else:
                keep.append(entry)
        self._entries = keep
        self._metrics.queue_size.set(len(keep))
        if dropped:
            self._metrics.failure("dropped", dropped)
        self._discard(gone)
