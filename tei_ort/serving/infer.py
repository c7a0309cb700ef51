"""The request path below HTTP: tokenize -> queue -> batcher -> engine -> postprocess.

::

    event loop       tokenization pool     batcher thread     engine thread   postprocess
    ----------       -----------------     --------------     -------------   -----------
    permit ->        encode the request's
                     inputs (one call) ->  queue.append
                                           next batch under
                                           the budget, pad -> engine.run ->   pool, normalize
    future resolved <----------------------------------------------------------  (thread-safe)

The batcher prepares the next batch while the engine runs the current one (a one-slot
hand-off, like TEI's channel of one). Concurrency permits (``--max-concurrent-requests``)
are taken per input: a single input that finds none free is refused at once (429), the
inputs of a batch request wait for theirs, as in TEI. A failed engine run fails only the
requests in its batch (424); /health runs a probe through the engine when the last run
failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from tei_ort.engines.base import Engine, EngineInputs
from tei_ort.errors import (
    BackendError,
    ConfigurationError,
    EmptyError,
    OverloadedError,
    RequestError,
    TokenizerError,
    UnhealthyError,
    ValidationError,
)
from tei_ort.model.info import ModelInfo, ModelKind, Pooling
from tei_ort.model.tokenization import Direction, Encoded, Token, Tokenizer, apply_prompt
from tei_ort.serving.batching import bucket_length, pad_batch
from tei_ort.serving.encoding import MAX_CHAR_MULTIPLIER, InputEncoder, Item
from tei_ort.serving.metrics import Metrics
from tei_ort.serving.postprocess import Mode, OutputSpec, postprocess
from tei_ort.serving.queue import Budget, Entry, Queue, Ticket
from tei_ort.serving.tracing import RequestTrace, Tracer
from tei_ort.settings import Settings

logger = logging.getLogger(__name__)

F32 = NDArray[np.float32]
#: how long /health waits for its probe through the engine
HEALTH_PROBE_TIMEOUT_S = 30.0


class ServedModel(Protocol):
    """What the server needs of a loaded model (``tei_ort.model.loading.LoadedModel`` has it)."""

    info: ModelInfo
    tokenizer: Tokenizer
    engine: Engine


def effective_max_input_length(settings: Settings, info: ModelInfo) -> int:
    """TEI's start-up rule for inputs longer than ``--max-batch-tokens``.

    Without auto-truncation a model whose inputs may be longer than one batch cannot be
    served (start-up fails); with it, inputs are truncated to ``max_batch_tokens``.
    """
    if info.max_input_length <= settings.max_batch_tokens:
        return info.max_input_length
    if not settings.auto_truncate:
        raise ConfigurationError(
            f"`--max-batch-tokens` cannot be lower than the model `max_input_length` "
            f"({settings.max_batch_tokens} < {info.max_input_length}) when `--auto-truncate` "
            f"is disabled: add `--auto-truncate` to truncate inputs to `--max-batch-tokens`"
        )
    logger.warning(
        "inputs will be truncated to %d tokens (--max-batch-tokens) although the model "
        "accepts %d, as --auto-truncate is on",
        settings.max_batch_tokens,
        info.max_input_length,
    )
    return settings.max_batch_tokens


def resolve_default_prompt(settings: Settings, info: ModelInfo) -> str | None:
    """``--default-prompt`` or the text ``--default-prompt-name`` names (checked at start)."""
    name = settings.default_prompt_name
    if name is None:
        return settings.default_prompt
    if not info.prompts:
        raise ConfigurationError(
            f"`default-prompt-name` is set to `{name}` but no prompts were found in the "
            f"Sentence Transformers configuration"
        )
    if name not in info.prompts:
        raise ConfigurationError(
            f"`default-prompt-name` is set to `{name}` but it was not found in the Sentence "
            f"Transformers prompts. Available prompts: {sorted(info.prompts)}"
        )
    return info.prompts[name]


# A request of one input up to this many characters is tokenized on the event loop: a
# sentence is a few tens of microseconds of tokenizer work, less than the hand-over to a
# pool thread and back (two thread wake-ups), which under load come out of the engine's
# CPU. Longer or batched inputs go to the pool, so as not to hold up the event loop.
INLINE_TOKENIZE_CHARS = 2048


def tokenize_inline(items: Sequence[Item]) -> bool:
    """Whether ``items`` is small enough to tokenize on the event loop."""
    if len(items) != 1:
        return False
    item = items[0]
    if isinstance(item, str):
        return len(item) <= INLINE_TOKENIZE_CHARS
    if isinstance(item, tuple):
        return len(item[0]) + len(item[1]) <= INLINE_TOKENIZE_CHARS
    return len(item) <= INLINE_TOKENIZE_CHARS  # token ids


@contextlib.contextmanager
def tokenization_errors() -> Iterator[None]:
    """A tokenizer failure as the client sees it: a RequestError of the tokenization phase."""
    try:
        yield
    except RequestError as exc:
        raise mark_phase(exc, "tokenization") from None
    except Exception as exc:
        logger.exception("tokenization failed")
        raise mark_phase(TokenizerError(f"tokenizer error {exc}"), "tokenization") from exc


def mark_phase(exc: RequestError, label: str) -> RequestError:
    """Record that ``exc`` is counted under another ``err`` label (TEI counts every error of
    the tokenization step as ``tokenization``, whatever its type)."""
    exc.__dict__["metric_phase"] = label
    return exc


def failure_label(exc: RequestError) -> str:
    label = exc.__dict__.get("metric_phase", exc.metric_label)
    return str(label)


@dataclass(frozen=True)
class Outcome:
    """A request's answers (one per input, in order) and its timings (averaged per input)."""

    results: list[Any]
    prompt_tokens: int
    tokenization: float
    queue: float
    inference: float


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


@dataclass
class _Batch:
    entries: list[Entry]
    inputs: EngineInputs
    tokens: int  # real tokens, before padding


class _Probe:
    """A health probe handed to the engine thread."""

    def __init__(self, inputs: EngineInputs) -> None:
        self.inputs = inputs
        self.done = threading.Event()
        self.ok = False


class _Slot:
    """The one-batch hand-off between the batcher and the engine thread (plus probes)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._batch: _Batch | None = None
        self._probes: list[_Probe] = []
        self._closed = False
        self._wanted = False  # the engine thread waits in take()

    def wait_wanted(self) -> bool:
        """Until the engine thread asks for a batch and none is waiting; False once closed."""
        with self._cond:
            while (self._batch is not None or not self._wanted) and not self._closed:
                self._cond.wait()
            return not self._closed

    def put(self, batch: _Batch) -> None:
        with self._cond:
            self._batch = batch
            self._cond.notify_all()

    def probe(self, probe: _Probe) -> None:
        with self._cond:
            self._probes.append(probe)
            self._cond.notify_all()

    def take(self) -> _Batch | _Probe | None:
        with self._cond:
            self._wanted = True
            self._cond.notify_all()
            while self._batch is None and not self._probes and not self._closed:
                self._cond.wait()
            self._wanted = False
            if self._probes:
                return self._probes.pop(0)
            batch, self._batch = self._batch, None
            self._cond.notify_all()
            return batch

    def close(self) -> _Batch | None:
        with self._cond:
            self._closed = True
            batch, self._batch = self._batch, None
            for probe in self._probes:
                probe.done.set()
            self._probes.clear()
            self._cond.notify_all()
            return batch


class Infer:
    """Turns validated inputs into answers; owns the queue, the threads and the permits."""

    def __init__(
        self,
        settings: Settings,
        model: ServedModel,
        metrics: Metrics,
        *,
        dense: Callable[[F32], F32] | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.settings = settings
        # None when tracing is off: then no request keeps a RequestTrace (see tracing.py)
        self.tracer = tracer
        self._traced: dict[Ticket, RequestTrace] = {}
        self.info = model.info
        self.tokenizer = model.tokenizer
        self.engine = model.engine
        self.metrics = metrics
        self.dense = dense
        self.max_input_length = effective_max_input_length(settings, model.info)
        self.default_prompt = resolve_default_prompt(settings, model.info)
        self.encoder = InputEncoder(
            model.info,
            model.tokenizer,
            self.max_input_length,
            default_prompt=self.default_prompt,
            on_length=metrics.input_length.observe,
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
        # engines whose shapes must repeat (TensorRT profiles, CUDA graphs) pad to buckets;
        # an engine may ask for another multiple (1: exact lengths, least compute on CPU)
        self.pad_multiple = max(1, self.engine.pad_multiple)
        self.permits = Permits(settings.max_concurrent_requests)
        self.queue = Queue(
            Budget(
                settings.max_batch_tokens,
                max_batch_requests,
                self.max_input_length,
                self.pad_multiple,
            ),
            metrics,
            discard=self._discard,
        )
        self._slot = _Slot()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._post: ThreadPoolExecutor | None = None
        self._threads: list[threading.Thread] = []
        self._healthy = False  # until the first run (the start-up probe) succeeds
        self._probe_inputs: EngineInputs | None = None

    # -- model kind ----------------------------------------------------------------------

    @property
    def kind(self) -> ModelKind:
        return self.info.kind

    @property
    def is_splade(self) -> bool:
        return self.encoder.is_splade

    @property
    def is_classifier(self) -> bool:
        return self.encoder.is_classifier

    @property
    def embedding_size(self) -> int | None:
        return self.encoder.embedding_size

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._pool = ThreadPoolExecutor(
            self.settings.tokenization_workers, thread_name_prefix="tei-ort-tokenize"
        )
        self._post = ThreadPoolExecutor(1, thread_name_prefix="tei-ort-postprocess")
        await self._warm_tokenizers()
        self._probe_inputs = self._make_probe_inputs()
        for target, name in ((self._batcher, "tei-ort-batcher"), (self._runner, "tei-ort-engine")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        if not await self.health():
            logger.warning("the engine failed its first run: /health answers 503")

    async def stop(self) -> None:
        left = self.queue.close()
        batch = self._slot.close()
        if batch is not None:
            left.extend(batch.entries)
        error = UnhealthyError("the server is shutting down")
        self._deliver(left, None, error, 0.0, 0.0)
        for thread in self._threads:
            await asyncio.to_thread(thread.join, 10.0)
        self._threads.clear()
        if self._post is not None:
            self._post.shutdown(wait=True)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

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
        return self._engine_inputs([encoded], len(encoded))

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
    ) -> Outcome:
        """Embeddings (pooled, per token or sparse, as ``spec.mode`` says) of each input."""
        self.encoder.check_embed(spec)
        prompt = self.encoder.prompt(prompt_name)
        held = self._take_single_permit(single)
        self.metrics.embed_count.inc(len(items))
        outcome = await self._submit(items, spec, truncate, direction, prompt, held)
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
    ) -> Outcome:
        """Classifier / re-ranker scores (one (L,) array per input).

        ``instruction`` is the task line of prompt-template re-rankers (Qwen3-Reranker).
        """
        self.encoder.check_predict()
        spec = OutputSpec(Mode.SCORES, raw_scores=raw_scores)
        held = self._take_single_permit(single)
        self.metrics.predict_count.inc(len(items))
        outcome = await self._submit(items, spec, truncate, direction, None, held, instruction)
        self._observe(self.metrics.predict, self.metrics.predict_success, outcome, len(items))
        return outcome

    async def tokenize(
        self, texts: Sequence[str], *, add_special_tokens: bool, prompt_name: str | None
    ) -> list[list[Token]]:
        prompt = self.encoder.prompt(prompt_name)
        limit = self.max_input_length * MAX_CHAR_MULTIPLIER

        def work() -> list[list[Token]]:
            for text in texts:
                if not text:
                    raise EmptyError("Input validation error: `inputs` cannot be empty")
                if len(text) > limit:
                    raise ValidationError(
                        f"Input validation error: `inputs` must have less than {limit} "
                        f"characters. Given: {len(text)}"
                    )
            prompted = [apply_prompt(text, prompt) for text in texts]
            return self.tokenizer.tokens(prompted, add_special_tokens=add_special_tokens)

        tokens: list[list[Token]] = await self._in_pool(work)
        return tokens

    async def decode(
        self, batch: Sequence[Sequence[int]], *, skip_special_tokens: bool
    ) -> list[str]:
        for ids in batch:
            if not ids:
                raise EmptyError("Input validation error: `input_ids` cannot be empty")
        texts: list[str] = await self._in_pool(
            lambda: self.tokenizer.decode_batch(batch, skip_special_tokens=skip_special_tokens)
        )
        return texts

    async def health(self) -> bool:
        """True when the engine can run: the last run succeeded, or a probe run does now."""
        if self._healthy:
            return True
        if self._probe_inputs is None or not self._threads:
            return False
        probe = _Probe(self._probe_inputs)
        self._slot.probe(probe)
        done = await asyncio.to_thread(probe.done.wait, HEALTH_PROBE_TIMEOUT_S)
        return done and probe.ok

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

    def _take_single_permit(self, single: bool) -> int:
        """A single input takes its permit now or is refused (429); a batch waits later."""
        if not single:
            return 0
        if not self.permits.try_acquire():
            raise OverloadedError("Model is overloaded")
        return 1

    async def _submit(
        self,
        items: Sequence[Item],
        spec: OutputSpec,
        truncate: bool,
        direction: Direction,
        prompt: str | None,
        held: int,
        instruction: str | None = None,
    ) -> Outcome:
        """Tokenize, queue (one permit per input; ``held`` already taken) and wait."""
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        ticket = Ticket(len(items), spec, loop.create_future())
        span = None if self.tracer is None else self.tracer.current()
        if span is not None:
            self._traced[ticket] = RequestTrace()
        tokenized: float | None = None
        encoded: list[Encoded] = []
        try:
            encoded = await self._tokenize(
                lambda: self.encoder.encode(items, truncate, direction, prompt, instruction),
                inline=tokenize_inline(items),
            )
            tokenized = time.perf_counter()
            tokenization = tokenized - started
            position = 0
            while position < len(encoded):
                if held == 0:
                    held = self.permits.take_up_to(len(encoded) - position)
                if held == 0:
                    await self.permits.acquire()
                    held = 1
                if ticket.finished:  # failed while we waited for permits
                    break
                chunk = [Entry(ticket, position + i, encoded[position + i]) for i in range(held)]
                self.queue.append(chunk)
                position += held
                held = 0
            await ticket.future
        except BaseException as exc:
            if held:
                self.permits.release(held)
            ticket.dropped = isinstance(exc, asyncio.CancelledError)
            ticket.finished = True
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

    def _engine_inputs(self, rows: Sequence[Encoded], longest: int) -> EngineInputs:
        padded = bucket_length(longest, multiple=self.pad_multiple, cap=self.max_input_length)
        input_ids, attention_mask, token_type_ids = pad_batch(
            [r.input_ids for r in rows],
            padded,
            pad_id=self.tokenizer.pad_token_id,
            type_rows=[r.token_type_ids for r in rows] if self.info.uses_token_type_ids else None,
        )
        return EngineInputs(input_ids, attention_mask, token_type_ids)

    # -- threads ---------------------------------------------------------------------------

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
                longest = max(entry.length for entry in entries)
                inputs = self._engine_inputs([entry.encoded for entry in entries], longest)
            except Exception as exc:  # a bug, not the client's fault: fail this batch only
                logger.exception("could not prepare a batch")
                self._resolve(entries, None, BackendError(f"Backend error: {exc}"), 0.0, 0.0)
                continue
            tokens = sum(entry.length for entry in entries)
            self.metrics.batch_next_size.observe(len(entries))
            self.metrics.batch_next_tokens.observe(tokens)
            self._slot.put(_Batch(entries, inputs, tokens))

    def _runner(self) -> None:
        """The one thread that calls the engine."""
        while True:
            item = self._slot.take()
            if item is None:
                return
            if isinstance(item, _Probe):
                try:
                    self.engine.run(item.inputs)
                    item.ok = self._healthy = True
                except Exception:
                    logger.exception("health probe failed")
                    item.ok = self._healthy = False
                item.done.set()
                continue
            started = time.perf_counter()
            try:
                output = self.engine.run(item.inputs)
            except Exception as exc:
                self._healthy = False
                logger.error("inference failed: %s", exc)
                ended = time.perf_counter()
                error = BackendError(f"Backend error: Inference error: {exc}")
                self._resolve(item.entries, None, error, started, ended)
                continue
            ended = time.perf_counter()
            self._healthy = True
            assert self._post is not None
            try:
                self._post.submit(self._finish, item, output, started, ended)
            except RuntimeError:  # shutting down: the post-processing pool is gone
                stopping = UnhealthyError("the server is shutting down")
                self._resolve(item.entries, None, stopping, started, ended)

    def _finish(self, batch: _Batch, output: F32, started: float, ended: float) -> None:
        try:
            lengths = [entry.length for entry in batch.entries]
            specs = [entry.ticket.spec for entry in batch.entries]
            results: list[F32] | None = postprocess(
                output,
                batch.inputs.attention_mask,
                lengths,
                specs,
                output_name=self.engine.output_name,
                pooling=self.info.pooling if self.info.pooling is not Pooling.SPLADE else None,
                dense=self.dense,
            )
            error: RequestError | None = None
        except Exception as exc:
            logger.exception("post-processing failed")
            results, error = None, BackendError(f"Backend error: Inference error: {exc}")
        self._resolve(batch.entries, results, error, started, ended)

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
