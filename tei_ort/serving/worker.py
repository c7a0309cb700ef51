"""The engine's threads: a batcher that forms batches, one thread that runs the engine, and
one that post-processes, handing each batch's answers back through ``resolve``.

::

    batcher thread                 engine thread          post-processing thread
    --------------                 -------------          ----------------------
    when the engine asks: next
    batch under the budget, pad -> executor.run    ->     executor.answers -> resolve(...)

The batcher forms a batch only when the engine thread asks for one (``handoff.Slot``), so
a batch holds all that is queued by then. A failed engine run fails only its batch (424)
and marks the engine unhealthy until a run (or a /health probe) succeeds.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.typing import NDArray

from tei_ort.engines.base import EngineInputs
from tei_ort.errors import BackendError, RequestError, UnhealthyError
from tei_ort.serving.executor import BatchExecutor
from tei_ort.serving.handoff import Batch, Probe, Slot
from tei_ort.serving.metrics import Metrics
from tei_ort.serving.queue import Entry, Queue

logger = logging.getLogger(__name__)

F32 = NDArray[np.float32]
#: called from the worker's threads with a batch's entries and its answers or its error,
#: and the engine run's start and end (perf_counter)
Resolve = Callable[[list[Entry], list[F32] | None, RequestError | None, float, float], None]


class EngineWorker:
    def __init__(
        self, queue: Queue, executor: BatchExecutor, metrics: Metrics, resolve: Resolve
    ) -> None:
        self.queue = queue
        self.executor = executor
        self.metrics = metrics
        self._resolve = resolve
        self._slot = Slot()
        self._post: ThreadPoolExecutor | None = None
        self._threads: list[threading.Thread] = []
        self.healthy = False  # until the first run (the start-up probe) succeeds

    def start(self) -> None:
        self._post = ThreadPoolExecutor(1, thread_name_prefix="tei-ort-postprocess")
        for target, name in ((self._batcher, "tei-ort-batcher"), (self._runner, "tei-ort-engine")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    @property
    def running(self) -> bool:
        return bool(self._threads)

    def close(self) -> list[Entry]:
        """Stop taking batches; returns the entries of a batch formed but not run."""
        batch = self._slot.close()
        return [] if batch is None else batch.entries

    async def join(self) -> None:
        for thread in self._threads:
            await asyncio.to_thread(thread.join, 10.0)
        self._threads.clear()
        if self._post is not None:
            self._post.shutdown(wait=True)

    async def probe(self, inputs: EngineInputs, timeout: float) -> bool:
        """Run ``inputs`` through the engine ahead of the queue; whether it ran."""
        probe = Probe(inputs)
        self._slot.probe(probe)
        done = await asyncio.to_thread(probe.done.wait, timeout)
        return done and probe.ok

    def _batcher(self) -> None:
        """Form a batch when the engine asks for one, of all that is queued by then.

        Not while the engine still runs the previous batch: that batch would leave out every
        request arriving meanwhile (32 single-text HTTP clients, MiniLM: 504 -> 520 texts/s;
        bench/README.md, "What changed").
        """
        while self._slot.wait_wanted():
            entries = self.queue.next_batch()
            if entries is None:
                return
            try:
                inputs = self.executor.inputs([entry.encoded for entry in entries])
            except Exception as exc:  # a bug, not the client's fault: fail this batch only
                logger.exception("could not prepare a batch")
                self._resolve(entries, None, BackendError(f"Backend error: {exc}"), 0.0, 0.0)
                continue
            tokens = sum(entry.length for entry in entries)
            self.metrics.batch_next_size.observe(len(entries))
            self.metrics.batch_next_tokens.observe(tokens)
            self._slot.put(Batch(entries, inputs, tokens))

    def _runner(self) -> None:
        """The one thread that calls the engine."""
        while True:
            item = self._slot.take()
            if item is None:
                return
            if isinstance(item, Probe):
                try:
                    self.executor.run(item.inputs)
                    item.ok = self.healthy = True
                except Exception:
                    logger.exception("health probe failed")
                    item.ok = self.healthy = False
                item.done.set()
                continue
            started = time.perf_counter()
            try:
                output = self.executor.run(item.inputs)
            except Exception as exc:
                self.healthy = False
                logger.error("inference failed: %s", exc)
                ended = time.perf_counter()
                error = BackendError(f"Backend error: {exc}")
                self._resolve(item.entries, None, error, started, ended)
                continue
            ended = time.perf_counter()
            self.healthy = True
            assert self._post is not None
            try:
                self._post.submit(self._finish, item, output, started, ended)
            except RuntimeError:  # shutting down: the post-processing pool is gone
                stopping = UnhealthyError("the server is shutting down")
                self._resolve(item.entries, None, stopping, started, ended)

    def _finish(self, batch: Batch, output: F32, started: float, ended: float) -> None:
        try:
            lengths = [entry.length for entry in batch.entries]
            specs = [entry.ticket.spec for entry in batch.entries]
            results: list[F32] | None = self.executor.answers(output, batch.inputs, lengths, specs)
            error: RequestError | None = None
        except Exception as exc:
            logger.exception("post-processing failed")
            results, error = None, BackendError(f"Backend error: {exc}")
        self._resolve(batch.entries, results, error, started, ended)
