"""The methods of TEI's gRPC API (package ``tei.v1``) over the shared ``Infer``.

One coroutine per kind of message: each takes one request message and returns a ``Reply``
whose ``content`` is the response message (the timings behind its ``Metadata`` and the
``x-*`` response headers ride along). The streaming methods run the same coroutines once
per message (``grpc_server`` does the stream plumbing); ``rerank_stream`` is the one
client-streaming method. As in TEI, a unary call takes its concurrency permit at once or is
refused (RESOURCE_EXHAUSTED); the messages of a stream wait for theirs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np

from tei_ort.errors import BackendError, BatchSizeError, EmptyError, ModelTypeError, ValidationError
from tei_ort.http.routes import Reply, info_document, record_success
from tei_ort.model.info import ModelKind
from tei_ort.model.tokenization import Direction
from tei_ort.proto import tei_pb2 as pb
from tei_ort.serving.infer import Infer, Outcome
from tei_ort.serving.metrics import Metrics
from tei_ort.serving.postprocess import Mode, OutputSpec, rank_order
from tei_ort.settings import Settings

#: one unary method's work: (request message, single?) -> Reply
Core = Callable[[Any, bool], Awaitable[Reply]]

_MODEL_TYPES = {
    ModelKind.EMBEDDING: pb.MODEL_TYPE_EMBEDDING,
    ModelKind.CLASSIFIER: pb.MODEL_TYPE_CLASSIFIER,
    ModelKind.RERANKER: pb.MODEL_TYPE_RERANKER,
}


def direction(value: int) -> Direction:
    return "left" if value == pb.TRUNCATION_DIRECTION_LEFT else "right"


def metadata(reply: Reply) -> pb.Metadata:
    """TEI's ``Metadata`` message: characters, tokens and the four timings in nanoseconds."""
    return pb.Metadata(
        compute_chars=reply.chars,
        compute_tokens=reply.tokens,
        total_time_ns=int((time.perf_counter() - reply.started) * 1e9),
        tokenization_time_ns=int(reply.tokenization * 1e9),
        queue_time_ns=int(reply.queue * 1e9),
        inference_time_ns=int(reply.inference * 1e9),
    )


class GrpcService:
    """The ``tei.v1`` methods; ``cores`` maps each method's full name to its coroutine."""

    def __init__(self, settings: Settings, infer: Infer) -> None:
        self.settings = settings
        self.infer = infer
        self.metrics: Metrics = infer.metrics
        self.compute_type = str(getattr(infer.engine, "compute_type", "cpu"))
        self.cores: dict[str, Core] = {
            "/tei.v1.Info/Info": self.info,
            "/tei.v1.Embed/Embed": self.embed,
            "/tei.v1.Embed/EmbedStream": self.embed,
            "/tei.v1.Embed/EmbedSparse": self.embed_sparse,
            "/tei.v1.Embed/EmbedSparseStream": self.embed_sparse,
            "/tei.v1.Embed/EmbedAll": self.embed_all,
            "/tei.v1.Embed/EmbedAllStream": self.embed_all,
            "/tei.v1.Predict/Predict": self.predict,
            "/tei.v1.Predict/PredictPair": self.predict_pair,
            "/tei.v1.Predict/PredictStream": self.predict,
            "/tei.v1.Predict/PredictPairStream": self.predict_pair,
            "/tei.v1.Rerank/Rerank": self.rerank,
            "/tei.v1.Tokenize/Tokenize": self.tokenize,
            "/tei.v1.Tokenize/TokenizeStream": self.tokenize,
            "/tei.v1.Tokenize/Decode": self.decode,
            "/tei.v1.Tokenize/DecodeStream": self.decode,
        }

    # -- plumbing -------------------------------------------------------------------------

    def _count(self, method: str = "single") -> float:
        self.metrics.request_count.labels(method=method).inc()
        return time.perf_counter()

    def _done(self, reply: Reply, outcome: Outcome, method: str = "single") -> Reply:
        return record_success(self.metrics, reply, outcome, method)

    def headers(self, reply: Reply) -> tuple[tuple[str, str], ...]:
        """The ``x-compute-*`` / ``x-*-time`` response metadata of an inference call."""
        return tuple(reply.headers(self.compute_type).items())

    # -- Info -----------------------------------------------------------------------------

    async def info(self, request: pb.InfoRequest, single: bool = True) -> Reply:
        doc = info_document(self.settings, self.infer)
        response = pb.InfoResponse(
            version=doc["version"],
            model_id=doc["model_id"],
            model_dtype=doc["model_dtype"],
            model_type=_MODEL_TYPES[self.infer.kind],
            max_concurrent_requests=doc["max_concurrent_requests"],
            max_input_length=doc["max_input_length"],
            max_batch_tokens=doc["max_batch_tokens"],
            max_client_batch_size=doc["max_client_batch_size"],
            tokenization_workers=doc["tokenization_workers"],
        )
        for name in ("sha", "docker_label", "model_sha", "max_batch_requests"):
            if doc[name] is not None:
                setattr(response, name, doc[name])
        return Reply(response, time.perf_counter())

    # -- Embed ----------------------------------------------------------------------------

    async def embed(self, request: pb.EmbedRequest, single: bool = True) -> Reply:
        started = self._count()
        spec = OutputSpec(
            Mode.POOLED,
            normalize=request.normalize if request.HasField("normalize") else True,
            dimensions=request.dimensions if request.HasField("dimensions") else None,
        )
        outcome = await self.infer.embed(
            [request.inputs],
            spec,
            truncate=request.truncate,
            direction=direction(request.truncation_direction),
            prompt_name=request.prompt_name if request.HasField("prompt_name") else None,
            single=single,
        )
        response = pb.EmbedResponse(embeddings=outcome.results[0].tolist())
        reply = self._done(Reply(response, started, chars=len(request.inputs)), outcome)
        response.metadata.CopyFrom(metadata(reply))
        return reply

    async def embed_sparse(self, request: pb.EmbedSparseRequest, single: bool = True) -> Reply:
        started = self._count()
        outcome = await self.infer.embed(
            [request.inputs],
            OutputSpec(Mode.SPARSE),
            truncate=request.truncate,
            direction=direction(request.truncation_direction),
            prompt_name=request.prompt_name if request.HasField("prompt_name") else None,
            single=single,
        )
        vector = outcome.results[0]  # (V,)
        (indices,) = np.nonzero(vector)
        values = vector[indices].tolist()
        response = pb.EmbedSparseResponse(
            sparse_embeddings=[
                pb.SparseValue(index=i, value=v)
                for i, v in zip(indices.tolist(), values, strict=True)
            ]
        )
        reply = self._done(Reply(response, started, chars=len(request.inputs)), outcome)
        response.metadata.CopyFrom(metadata(reply))
        return reply

    async def embed_all(self, request: pb.EmbedAllRequest, single: bool = True) -> Reply:
        started = self._count()
        outcome = await self.infer.embed(
            [request.inputs],
            OutputSpec(Mode.TOKENS),
            truncate=request.truncate,
            direction=direction(request.truncation_direction),
            prompt_name=request.prompt_name if request.HasField("prompt_name") else None,
            single=single,
        )
        tokens = outcome.results[0]  # (T, H)
        response = pb.EmbedAllResponse(
            token_embeddings=[pb.TokenEmbedding(embeddings=row) for row in tokens.tolist()]
        )
        reply = self._done(Reply(response, started, chars=len(request.inputs)), outcome)
        response.metadata.CopyFrom(metadata(reply))
        return reply

    # -- Predict --------------------------------------------------------------------------

    def _predictions(self, scores: np.ndarray) -> list[pb.Prediction]:
        """Labelled scores, best first (as /predict sorts them)."""
        if np.isnan(scores).any():
            raise BackendError("score is NaN")
        labels = self.infer.info.id2label
        values = scores.tolist()
        return [
            pb.Prediction(score=values[i], label=labels.get(i, f"LABEL_{i}"))
            for i in rank_order(scores)
        ]

    async def _predict(
        self, item: str | tuple[str, str], request: Any, chars: int, single: bool
    ) -> Reply:
        started = self._count()
        outcome = await self.infer.predict(
            [item],
            raw_scores=request.raw_scores,
            truncate=request.truncate,
            direction=direction(request.truncation_direction),
            single=single,
        )
        response = pb.PredictResponse(predictions=self._predictions(outcome.results[0]))
        reply = self._done(Reply(response, started, chars=chars), outcome)
        response.metadata.CopyFrom(metadata(reply))
        return reply

    async def predict(self, request: pb.PredictRequest, single: bool = True) -> Reply:
        return await self._predict(request.inputs, request, len(request.inputs), single)

    async def predict_pair(self, request: pb.PredictPairRequest, single: bool = True) -> Reply:
        inputs = list(request.inputs)
        item: str | tuple[str, str]
        if len(inputs) == 1:
            item = inputs[0]
        elif len(inputs) == 2:
            item = (inputs[0], inputs[1])
        else:
            self._count()
            raise ValidationError(
                f"Input validation error: `inputs` must have a single or two elements. "
                f"Given: {len(inputs)}"
            )
        return await self._predict(item, request, sum(len(text) for text in inputs), single)

    # -- Rerank ---------------------------------------------------------------------------

    def _check_reranker(self) -> None:
        if self.infer.kind is not ModelKind.RERANKER:
            raise ModelTypeError("Backend error: Inference error: model is not a re-ranker model")

    def _ranks(self, scores: list[float], texts: list[str], return_text: bool) -> list[pb.Rank]:
        array = np.asarray(scores, dtype=np.float32)
        if np.isnan(array).any():
            raise BackendError("score is NaN")
        values = array.tolist()
        ranks = []
        for index in rank_order(array):
            rank = pb.Rank(index=index, score=values[index])
            if return_text:
                rank.text = texts[index]
            ranks.append(rank)
        return ranks

    async def rerank(self, request: pb.RerankRequest, single: bool = True) -> Reply:
        started = self._count("batch")
        texts = list(request.texts)
        if not texts:
            raise EmptyError("`texts` cannot be empty")
        self._check_reranker()
        if len(texts) > self.settings.max_client_batch_size:
            raise BatchSizeError(
                f"batch size {len(texts)} > maximum allowed batch size "
                f"{self.settings.max_client_batch_size}"
            )
        outcome = await self.infer.predict(
            [(request.query, text) for text in texts],
            raw_scores=request.raw_scores,
            truncate=request.truncate,
            direction=direction(request.truncation_direction),
        )
        scores = [float(result[0]) for result in outcome.results]
        response = pb.RerankResponse(ranks=self._ranks(scores, texts, request.return_text))
        chars = len(request.query) * len(texts) + sum(len(text) for text in texts)
        reply = self._done(Reply(response, started, chars=chars), outcome, "batch")
        response.metadata.CopyFrom(metadata(reply))
        return reply

    async def rerank_stream(
        self, requests: AsyncIterator[pb.RerankStreamRequest], window: int
    ) -> Reply:
        """RerankStream: each (query, text) message is scored as it arrives (waiting for a
        permit, at most ``window`` in flight); one RerankResponse ranks them all."""
        started = self._count("batch")
        self._check_reranker()
        limit = asyncio.Semaphore(window)
        tasks: list[asyncio.Task[Outcome]] = []
        texts: list[str] = []
        chars = 0
        first: pb.RerankStreamRequest | None = None

        async def score(message: pb.RerankStreamRequest, raw_scores: bool) -> Outcome:
            try:
                return await self.infer.predict(
                    [(message.query, message.text)],
                    raw_scores=raw_scores,
                    truncate=message.truncate,
                    direction=direction(message.truncation_direction),
                )
            finally:
                limit.release()

        try:
            async for message in requests:
                first = first or message
                texts.append(message.text)
                chars += len(message.query) + len(message.text)
                await limit.acquire()
                tasks.append(asyncio.ensure_future(score(message, first.raw_scores)))
            if first is None:
                raise EmptyError("`texts` cannot be empty")
            outcomes = await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
        scores = [float(outcome.results[0][0]) for outcome in outcomes]
        response = pb.RerankResponse(ranks=self._ranks(scores, texts, first.return_text))
        count = len(outcomes)
        total = Outcome(
            results=[],
            prompt_tokens=sum(o.prompt_tokens for o in outcomes),
            tokenization=sum(o.tokenization for o in outcomes) / count,
            queue=sum(o.queue for o in outcomes) / count,
            inference=sum(o.inference for o in outcomes) / count,
        )
        reply = self._done(Reply(response, started, chars=chars), total, "batch")
        response.metadata.CopyFrom(metadata(reply))
        return reply

    # -- Tokenize -------------------------------------------------------------------------

    async def tokenize(self, request: pb.EncodeRequest, single: bool = True) -> Reply:
        (tokens,) = await self.infer.tokenize(
            [request.inputs],
            add_special_tokens=request.add_special_tokens,
            prompt_name=request.prompt_name if request.HasField("prompt_name") else None,
        )
        response = pb.EncodeResponse()
        for token in tokens:
            simple = response.tokens.add(id=token.id, text=token.text, special=token.special)
            if token.start is not None:
                simple.start = token.start
            if token.stop is not None:
                simple.stop = token.stop
        return Reply(response, time.perf_counter())

    async def decode(self, request: pb.DecodeRequest, single: bool = True) -> Reply:
        (text,) = await self.infer.decode(
            [list(request.ids)], skip_special_tokens=request.skip_special_tokens
        )
        return Reply(pb.DecodeResponse(text=text), time.perf_counter())
