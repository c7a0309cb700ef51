"""The request path below HTTP: tokenize -> queue -> batcher -> engine -> postprocess.

::

    event loop       tokenization pool     batcher thread     engine thread   postprocess
    ----------       -----------------     --------------     -------------   -----------
    permit ->        encode the request's
                     inputs (one call) ->  queue.append
                                           next batch under
                                           the budget, pad -> engine.run ->   pool, normalize
    future resolved <----------------------------------------------------------  (thread-safe)

The threads are ``worker.EngineWorker``'s; this module owns the event-loop side.
Concurrency permits (``--max-concurrent-requests``) are taken per input: a single input
that finds none free is refused at once (429), as in TEI; the inputs of any other request
wait for theirs in the request's place in line (``permits``: oldest request first), for at
most ``--max-queue-wait`` seconds when it is set (then 429). A failed engine run fails only
the requests in its batch (424); /health runs a probe through the engine when the last run
failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from tei_ort.engines.base import EngineInputs
from tei_ort.errors import BackendError, OverloadedError, RequestError, UnhealthyError
from tei_ort.model.info import ModelKind
from tei_ort.model.tokenization import Direction, Encoded, Token, apply_prompt
from tei_ort.serving import validation
from tei_ort.serving.calibration import Calibrator, calibratable
from tei_ort.serving.encoding import InputEncoder, Item
from tei_ort.serving.executor import BatchExecutor, ServedModel
from tei_ort.serving.metrics import Metrics
from tei_ort.serving.permits import Claim, Permits
from tei_ort.serving.phases import failure_label, tokenization_errors, tokenize_inline
from tei_ort.serving.postprocess import Mode, OutputSpec
from tei_ort.serving.queue import Budget, Entry, Queue, Ticket
from tei_ort.serving.startup import effective_max_input_length, resolve_default_prompt
from tei_ort.serving.tracing import RequestTrace, Tracer
from tei_ort.serving.worker import EngineWorker
from tei_ort.settings import Settings

__all__ = ["Infer", "Outcome", "ServedModel", "failure_label"]

logger = logging.getLogger(__name__)

F32 = NDArray[np.float32]
T = TypeVar("T")
#: how long /health waits for its probe through the engine
HEALTH_PROBE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Outcome:
    """A request's answers (one per input, in order) and its timings (averaged per input)."""

    results: list[Any]
    prompt_tokens: int
    tokenization: float
    queue: float
    inference: float


class Infer:
    """Turns validated inputs into answers; owns the queue, the threads and the permits."""

    def __init__(
        self,
        settings: Settings,
        model: ServedModel,
        *,
        metrics: Metrics | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        metrics = metrics or Metrics(max_input_length=model.info.max_input_length)
        self.settings = settings
        # None when tracing is off: then no request keeps a RequestTrace (see tracing.py)
        self.tracer = tracer
        self._traced: dict[Ticket, RequestTrace] = {}
        self.info = model.info
        self.tokenizer = model.tokenizer
        self.engine = model.engine
        self.metrics = metrics
        self.max_input_length = effective_max_input_length(settings, model.info)
        self.default_prompt = resolve_default_prompt(settings, model.info)
        self.encoder = InputEncoder(
            model.info,
            model.tokenizer,
            self.max_input_length,
            default_prompt=self.default_prompt,
            on_length=metrics.input_length.observe,
            late=model.late,
        )
        max_batch_requests = settings.max_batch_requests
        engine_limit = self.engine.max_batch_size
        if engine_limit is not None and (
            max_batch_requests is None or max_batch_requests > engine_limit
        ):
            logger.warning(
                "the engine does not support a batch size > %d: forcing max_batch_requests=%d",
                engine_limit,
                engine_limit,
            )
            max_batch_requests = engine_limit
        self.max_batch_requests = max_batch_requests
        self.executor = BatchExecutor(model, self.max_input_length)
        # the int8 / uint8 ranges: read from the engine cache entry, or computed at start
        self.calibrator = Calibrator(
            model.info, self.executor, self.encoder, getattr(model, "entry_dir", None)
        )
        self.permits = Permits(settings.max_concurrent_requests)
        self.queue = Queue(
            Budget(
                settings.max_batch_tokens,
                max_batch_requests,
                self.max_input_length,
                self.executor.pad_multiple,
            ),
            metrics,
            discard=self._discard,
        )
        self.worker = EngineWorker(self.queue, self.executor, metrics, self._resolve)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._own_pool = True
        self._probe_inputs: EngineInputs | None = None

    # -- model kind ----------------------------------------------------------------------

    @property
    def kind(self) -> ModelKind:
        return self.info.kind

    # -- life cycle ------------------------------------------------------------------------

    async def start(self, pool: ThreadPoolExecutor | None = None) -> None:
        """Start the engine threads; ``pool``: a tokenization pool shared with other models
        (``registry.Registry``), else this Infer makes and owns one."""
        self._loop = asyncio.get_running_loop()
        self._own_pool = pool is None
        self._pool = pool or ThreadPoolExecutor(
            self.settings.tokenization_workers, thread_name_prefix="tei-ort-tokenize"
        )
        await self._warm_tokenizers()
        self._probe_inputs = self._make_probe_inputs()
        await self._calibrate()
        self.worker.start()
        if not await self.health():
            logger.warning("the engine failed its first run: /health answers 503")

    async def stop(self) -> None:
        left = self.queue.close()
        left.extend(self.worker.close())
        error = UnhealthyError("the server is shutting down")
        self._deliver(left, None, error, 0.0, 0.0)
        await self.worker.join()
        if self._pool is not None and self._own_pool:
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def _calibrate(self) -> None:
        """Load or compute the int8 / uint8 ranges before the engine thread takes requests
        (the engine runs one batch at a time). A failure leaves the server up: the int8 /
        uint8 types are then refused (503), every other answer is unaffected."""
        if not calibratable(self.info):
            return
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.calibrator.get)
        except Exception:
            logger.exception("calibrating the int8/uint8 ranges failed: int8/uint8 refused")

    async def _warm_tokenizers(self) -> None:
        """Give every tokenization thread, and the event loop's, its tokenizer copy now, not
        on a first request."""
        self.tokenizer.encode_batch(["warm up"], max_length=self.max_input_length)
        workers = self.settings.tokenization_workers
        barrier = threading.Barrier(workers, timeout=5.0)

        def warm() -> None:
            self.tokenizer.encode_batch(["warm up"], max_length=self.max_input_length)
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()

        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self._pool, warm) for _ in range(workers)))

    def _make_probe_inputs(self) -> EngineInputs:
        try:
            (encoded,) = self.tokenizer.encode_batch(["health"], max_length=self.max_input_length)
        except RequestError:
            encoded = Encoded(
                np.asarray([self.tokenizer.pad_token_id], np.int64), np.zeros(1, np.int64)
            )
        return self.executor.inputs([encoded])

    # -- public operations ---------------------------------------------------------------

    async def embed(
        self,
        items: Sequence[Item],
        spec: OutputSpec,
        *,
        truncate: bool,
        direction: Direction = "right",
        prompt_name: str | None = None,
        single: bool = False,
        place: Claim | None = None,
        no_prompt: bool = False,
    ) -> Outcome:
        """Embeddings (pooled, per token or sparse, as ``spec.mode`` says) of each input.

        ``place``: the request's place in line for permits, taken by the caller (the parts
        of a /vertex body, which gives it up if this fails before it is used).
        ``no_prompt``: token-id inputs that already hold their prompt (late chunking's
        windows), which the default prompt must not be put in front of again."""
        self.encoder.check_embed(spec)
        prompt = None if no_prompt else self.encoder.prompt(prompt_name)
        self.encoder.check_late(spec)
        place = self._admit(len(items), single, place)
        self.metrics.embed_count.inc(len(items))
        outcome = await self._submit(items, spec, truncate, direction, prompt, place)
        if spec.dimensions is not None and self.encoder.embedding_size is None:
            for vector in outcome.results:  # (D',): D' < dimensions when D was too small
                validation.check_dimensions_fit(spec.dimensions, vector.shape[-1])
        self._observe(self.metrics.embed, self.metrics.embed_success, outcome, len(items))
        return outcome

    async def predict(
        self,
        items: Sequence[str | tuple[str, str]],
        *,
        raw_scores: bool,
        truncate: bool,
        direction: Direction = "right",
        single: bool = False,
        instruction: str | None = None,
        place: Claim | None = None,
    ) -> Outcome:
        """Classifier / re-ranker scores (one (L,) array per input).

        ``instruction`` is the task line of prompt-template re-rankers (Qwen3-Reranker);
        ``place`` as for ``embed``.
        """
        self.encoder.check_predict()
        place = self._admit(len(items), single, place)
        spec = OutputSpec(Mode.SCORES, raw_scores=raw_scores)
        self.metrics.predict_count.inc(len(items))
        outcome = await self._submit(items, spec, truncate, direction, None, place, instruction)
        self._observe(self.metrics.predict, self.metrics.predict_success, outcome, len(items))
        return outcome

    async def tokenize(
        self, texts: Sequence[str], *, add_special_tokens: bool, prompt_name: str | None
    ) -> list[list[Token]]:
        """The tokens of each text, in the tokenization pool; refused when all of them
        together are more than ``validation.tokenize_token_limit``."""
        prompt = self.encoder.prompt(prompt_name)
        limit = self.max_input_length * validation.MAX_CHAR_MULTIPLIER
        token_limit = validation.tokenize_token_limit(self.max_input_length)

        def check_count(count: int) -> None:
            validation.check_tokenize_count(count, token_limit)

        def work() -> list[list[Token]]:
            for text in texts:
                validation.check_not_empty(text)
                validation.over_char_limit(len(text), limit, truncate=False)
            prompted = [apply_prompt(text, prompt) for text in texts]
            return self.tokenizer.tokens(
                prompted, add_special_tokens=add_special_tokens, check_count=check_count
            )

        tokens: list[list[Token]] = await self._in_pool(work)
        return tokens

    async def offload(self, work: Callable[[], T]) -> T:
        """``work()`` in the tokenization pool, off the event loop (answers that take long
        to build, such as /tokenize's)."""
        result: T = await self._in_pool(work)
        return result

    async def decode(
        self, batch: Sequence[Sequence[int]], *, skip_special_tokens: bool
    ) -> list[str]:
        for ids in batch:
            validation.check_ids_not_empty(ids)
        texts: list[str] = await self._in_pool(
            lambda: self.tokenizer.decode_batch(batch, skip_special_tokens=skip_special_tokens)
        )
        return texts

    async def health(self) -> bool:
        """True when the engine can run: the last run succeeded, or a probe run does now."""
        if self.worker.healthy:
            return True
        if self._probe_inputs is None or not self.worker.running:
            return False
        return await self.worker.probe(self._probe_inputs, HEALTH_PROBE_TIMEOUT_S)

    # -- internals -----------------------------------------------------------------------

    async def _tokenize(self, work: Callable[[], Any], *, inline: bool) -> Any:
        """``work()`` on the event loop when ``inline``, else in the tokenization pool."""
        if not inline:
            return await self._in_pool(work)
        with tokenization_errors():
            return work()

    async def _in_pool(self, work: Callable[[], Any]) -> Any:
        assert self._loop is not None and self._pool is not None, "Infer.start() was not awaited"
        with tokenization_errors():
            return await self._loop.run_in_executor(self._pool, work)

    def _observe(self, stage: Any, success: Any, outcome: Outcome, count: int) -> None:
        """te_embed_* / te_predict_*: TEI records them per input."""
        success.inc(count)
        total = outcome.tokenization + outcome.queue + outcome.inference
        for _ in range(count):
            stage.observe(total, outcome.tokenization, outcome.queue, outcome.inference)

    def _admit(self, size: int, single: bool, place: Claim | None) -> Claim:
        """The request's permits: a single input takes its permit now or is refused (429),
        as in TEI; any other request takes its place in line (``place`` if the caller took
        it already)."""
        if place is not None:
            if place.size != size:
                raise AssertionError(f"a place for {place.size} inputs given {size}")
            return place
        if not single:
            return self.permits.claim(size)
        claim = self.permits.try_claim(size)
        if claim is None:
            raise OverloadedError("Model is overloaded")
        return claim

    def _deadline(self, place: Claim) -> float | None:
        """When ``place`` stops waiting for permits (``--max-queue-wait``; monotonic)."""
        wait = self.settings.max_queue_wait
        return None if wait is None else place.arrived + wait

    async def _submit(
        self,
        items: Sequence[Item],
        spec: OutputSpec,
        truncate: bool,
        direction: Direction,
        prompt: str | None,
        place: Claim,
        instruction: str | None = None,
    ) -> Outcome:
        """Tokenize, queue each input as ``place`` is granted its permit, and wait; whatever
        way this ends, ``place`` leaves the line and gives back what it did not use."""
        try:
            return await self._run(items, spec, truncate, direction, prompt, place, instruction)
        finally:
            self.permits.leave(place)

    async def _run(
        self,
        items: Sequence[Item],
        spec: OutputSpec,
        truncate: bool,
        direction: Direction,
        prompt: str | None,
        place: Claim,
        instruction: str | None,
    ) -> Outcome:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        ticket = Ticket(len(items), spec, loop.create_future())
        span = None if self.tracer is None else self.tracer.current()
        if span is not None:
            self._traced[ticket] = RequestTrace()
        tokenized: float | None = None
        encoded: list[Encoded] = []
        position = 0  # inputs queued so far
        deadline = self._deadline(place)
        try:
            encoded = await self._tokenize(
                lambda: self.encoder.encode(
                    items, truncate, direction, prompt, instruction, query=spec.query
                ),
                inline=tokenize_inline(items),
            )
            tokenized = time.perf_counter()
            tokenization = tokenized - started
            while position < len(encoded):
                if not await self.permits.wait(place, deadline):  # its turn, or 429
                    logger.info("a request waited over --max-queue-wait for its permits")
                    raise OverloadedError("Model is overloaded")
                if ticket.finished:  # failed while we waited for permits
                    break
                count = self.permits.take(place)
                chunk = [Entry(ticket, position + i, encoded[position + i]) for i in range(count)]
                self.queue.append(chunk)
                position += count
            await ticket.future
        except BaseException as exc:
            ticket.dropped = isinstance(exc, asyncio.CancelledError)
            ticket.finished = True
            if position:  # some of its inputs are queued: take them out now
                self.queue.withdraw()
            raise
        finally:
            if span is not None:
                assert self.tracer is not None
                self.tracer.finish_request(
                    span,
                    self._traced.pop(ticket, None),
                    tokenize=(started, tokenized or time.perf_counter()),
                    inputs=len(items),
                    tokens=sum(len(e) for e in encoded) if tokenized is not None else None,
                )
        size = len(items)
        return Outcome(
            results=ticket.results,
            prompt_tokens=ticket.tokens,
            tokenization=tokenization,
            queue=ticket.queue_time / size,
            inference=ticket.inference_time / size,
        )

    def _resolve(
        self,
        entries: list[Entry],
        results: list[F32] | None,
        error: RequestError | None,
        started: float,
        ended: float,
    ) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._deliver, entries, results, error, started, ended)

    def _deliver(
        self,
        entries: list[Entry],
        results: list[F32] | None,
        error: RequestError | None,
        started: float,
        ended: float,
    ) -> None:
        """On the event loop: give permits back and answer the entries' requests."""
        self.permits.release(len(entries))
        if self._traced and error is None and results is not None:
            self._trace_batch(entries, started, ended)
        for position, entry in enumerate(entries):
            ticket = entry.ticket
            if ticket.finished:
                continue
            if error is not None or results is None:
                ticket.finished = True
                if not ticket.future.done():
                    failure = error or BackendError("Backend error")
                    ticket.future.set_exception(type(failure)(failure.message))
                continue
            ticket.results[entry.index] = results[position]
            ticket.tokens += entry.length
            ticket.queue_time += max(0.0, started - entry.queued_at)
            ticket.inference_time += ended - started
            ticket.remaining -= 1
            if ticket.remaining == 0:
                ticket.finished = True
                if not ticket.future.done():
                    ticket.future.set_result(None)

    def _trace_batch(self, entries: list[Entry], started: float, ended: float) -> None:
        """Note this batch in the RequestTrace of each traced request it carried."""
        tokens = sum(entry.length for entry in entries)
        for entry in entries:
            record = self._traced.get(entry.ticket)
            if record is not None:
                record.add(entry.queued_at, started, ended, len(entries), tokens)

    def _discard(self, entries: list[Entry]) -> None:
        """Entries the queue removed (dropped clients, failed requests): free their permits."""
        loop = self._loop
        if entries and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.permits.release, len(entries))
