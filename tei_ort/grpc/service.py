"""The methods of TEI's gRPC API (package ``tei.v1``): thin adapters over the shared handlers.

One coroutine per kind of message: each turns a request message into a request of
``serving.requests``, calls the shared handler (``serving.handlers``) and turns its answer
into the response message, returned as a ``Reply`` (the timings behind its ``Metadata``
and the ``x-*`` response headers ride along). The streaming methods run the same
coroutines once per message (``server`` does the stream plumbing); ``rerank_stream`` is
the one client-streaming method. As in TEI, a unary call takes its concurrency permit at
once or is refused (RESOURCE_EXHAUSTED); the messages of a stream wait for theirs, and
every call is counted as ``single`` but Rerank (``batch``). proto3 defaults are TEI's gRPC
defaults: ``truncate`` false when not sent, ``normalize`` true.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np

from tei_ort.errors import EmptyError, ValidationError
from tei_ort.model.info import ModelKind
from tei_ort.model.tokenization import Direction
from tei_ort.proto import tei_pb2 as pb
from tei_ort.serving import validation
from tei_ort.serving.fanout import cancel_all
from tei_ort.serving.handlers import Handlers, Label, ranked
from tei_ort.serving.infer import Infer, Outcome
from tei_ort.serving.postprocess import Mode
from tei_ort.serving.reply import Reply, record_success
from tei_ort.serving.requests import (
    DecodeRequest,
    EmbedRequest,
    PredictRequest,
    RerankRequest,
    TokenizeRequest,
)
from tei_ort.settings import Settings

#: one unary method's work: (request message, unary?) -> Reply
Core = Callable[[Any, bool], Awaitable[Reply]]

_MODEL_TYPES = {
    ModelKind.EMBEDDING: pb.MODEL_TYPE_EMBEDDING,
    ModelKind.CLASSIFIER: pb.MODEL_TYPE_CLASSIFIER,
    ModelKind.RERANKER: pb.MODEL_TYPE_RERANKER,
}


def direction(value: int) -> Direction:
    return "left" if value == pb.TRUNCATION_DIRECTION_LEFT else "right"


def _optional(message: Any, name: str) -> Any:
    return getattr(message, name) if message.HasField(name) else None


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


def _predictions(labels: list[Label]) -> list[pb.Prediction]:
    return [pb.Prediction(score=label.score, label=label.label) for label in labels]


def _ranks(ranks: list[tuple[int, float]], texts: list[str], return_text: bool) -> list[pb.Rank]:
    out = []
    for index, score in ranks:
        rank = pb.Rank(index=index, score=score)
        if return_text:
            rank.text = texts[index]
        out.append(rank)
    return out


class GrpcService:
    """The ``tei.v1`` methods; ``cores`` maps each method's full name to its coroutine."""

    def __init__(self, settings: Settings, infer: Infer) -> None:
        self.handlers = Handlers(settings, infer)
        self.infer = infer
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

    def headers(self, reply: Reply) -> tuple[tuple[str, str], ...]:
        """The ``x-compute-*`` / ``x-*-time`` response metadata of an inference call."""
        return tuple(reply.headers(self.handlers.compute_type).items())

    @staticmethod
    def _with_metadata(reply: Reply, response: Any) -> Reply:
        response.metadata.CopyFrom(metadata(reply))
        reply.content = response
        return reply

    # -- Info -----------------------------------------------------------------------------

    async def info(self, request: pb.InfoRequest, unary: bool = True) -> Reply:
        doc = self.handlers.info_document()
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

    def _embed_request(self, request: Any, *, pooled: bool) -> EmbedRequest:
        normalize = _optional(request, "normalize") if pooled else None
        return EmbedRequest(
            inputs=[request.inputs],
            single=True,
            truncate=request.truncate,
            truncation_direction=direction(request.truncation_direction),
            prompt_name=_optional(request, "prompt_name"),
            normalize=True if normalize is None else normalize,
            dimensions=_optional(request, "dimensions") if pooled else None,
        )

    async def embed(self, request: pb.EmbedRequest, unary: bool = True) -> Reply:
        req = self._embed_request(request, pooled=True)
        reply = await self.handlers.embed(req, immediate=unary)
        response = pb.EmbedResponse(embeddings=reply.content[0].tolist())
        return self._with_metadata(reply, response)

    async def embed_sparse(self, request: pb.EmbedSparseRequest, unary: bool = True) -> Reply:
        req = self._embed_request(request, pooled=False)
        reply = await self.handlers.embed(req, Mode.SPARSE, immediate=unary)
        vector = reply.content[0]  # (V,)
        (indices,) = np.nonzero(vector)
        values = vector[indices].tolist()
        sparse = [
            pb.SparseValue(index=i, value=v) for i, v in zip(indices.tolist(), values, strict=True)
        ]
        return self._with_metadata(reply, pb.EmbedSparseResponse(sparse_embeddings=sparse))

    async def embed_all(self, request: pb.EmbedAllRequest, unary: bool = True) -> Reply:
        req = self._embed_request(request, pooled=False)
        input_type = _optional(request, "input_type")
        if input_type not in (None, "query", "document"):
            self.handlers.count(True)
            raise ValidationError(
                f'Input validation error: `input_type` must be "query" or "document", '
                f"got {input_type!r}"
            )
        req = dataclasses.replace(req, query=input_type == "query")
        reply = await self.handlers.embed(req, Mode.TOKENS, immediate=unary)
        tokens = reply.content[0]  # (T, H)
        rows = [pb.TokenEmbedding(embeddings=row) for row in tokens.tolist()]
        return self._with_metadata(reply, pb.EmbedAllResponse(token_embeddings=rows))

    # -- Predict --------------------------------------------------------------------------

    async def _predict(self, item: str | tuple[str, str], request: Any, unary: bool) -> Reply:
        req = PredictRequest(
            inputs=[item],
            single=True,
            truncate=request.truncate,
            truncation_direction=direction(request.truncation_direction),
            raw_scores=request.raw_scores,
        )
        reply = await self.handlers.predict(req, immediate=unary)
        response = pb.PredictResponse(predictions=_predictions(reply.content[0]))
        return self._with_metadata(reply, response)

    async def predict(self, request: pb.PredictRequest, unary: bool = True) -> Reply:
        return await self._predict(request.inputs, request, unary)

    async def predict_pair(self, request: pb.PredictPairRequest, unary: bool = True) -> Reply:
        inputs = list(request.inputs)
        if len(inputs) not in (1, 2):
            self.handlers.count(True)
        validation.check_pair_count(len(inputs))
        item = inputs[0] if len(inputs) == 1 else (inputs[0], inputs[1])
        return await self._predict(item, request, unary)

    # -- Rerank ---------------------------------------------------------------------------

    async def rerank(self, request: pb.RerankRequest, unary: bool = True) -> Reply:
        texts = list(request.texts)
        req = RerankRequest(
            query=request.query,
            texts=texts,
            truncate=request.truncate,
            truncation_direction=direction(request.truncation_direction),
            raw_scores=request.raw_scores,
            return_text=request.return_text,
        )
        reply = await self.handlers.rerank(req, validation.check_grpc_rerank_route)
        response = pb.RerankResponse(ranks=_ranks(reply.content, texts, request.return_text))
        return self._with_metadata(reply, response)

    async def rerank_stream(
        self, requests: AsyncIterator[pb.RerankStreamRequest], window: int
    ) -> Reply:
        """RerankStream: each (query, text) message is scored as it arrives (waiting for a
        permit, at most ``window`` in flight); one RerankResponse ranks them all."""
        started = self.handlers.count(False)
        validation.check_grpc_rerank_route(self.infer.info)
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
            await cancel_all(tasks)  # a failure or a client gone: no message outlives the call
        scores = np.asarray([o.results[0][0] for o in outcomes], dtype=np.float32)  # (N,)
        response = pb.RerankResponse(ranks=_ranks(ranked(scores), texts, first.return_text))
        count = len(outcomes)
        total = Outcome(
            results=[],
            prompt_tokens=sum(o.prompt_tokens for o in outcomes),
            tokenization=sum(o.tokenization for o in outcomes) / count,
            queue=sum(o.queue for o in outcomes) / count,
            inference=sum(o.inference for o in outcomes) / count,
        )
        reply = record_success(
            self.handlers.metrics, Reply(response, started, chars=chars), total, "batch"
        )
        return self._with_metadata(reply, response)

    # -- Tokenize -------------------------------------------------------------------------

    async def tokenize(self, request: pb.EncodeRequest, unary: bool = True) -> Reply:
        req = TokenizeRequest(
            inputs=[request.inputs],
            single=True,
            add_special_tokens=request.add_special_tokens,
            prompt_name=_optional(request, "prompt_name"),
        )
        reply = await self.handlers.tokenize(req)
        response = pb.EncodeResponse()
        for token in reply.content[0]:
            simple = response.tokens.add(id=token.id, text=token.text, special=token.special)
            if token.start is not None:
                simple.start = token.start
            if token.stop is not None:
                simple.stop = token.stop
        reply.content = response
        return reply

    async def decode(self, request: pb.DecodeRequest, unary: bool = True) -> Reply:
        req = DecodeRequest(
            ids=[list(request.ids)], single=True, skip_special_tokens=request.skip_special_tokens
        )
        reply = await self.handlers.decode(req)
        reply.content = pb.DecodeResponse(text=reply.content[0])
        return reply
