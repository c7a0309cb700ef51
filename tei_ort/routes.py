"""Every HTTP route of TEI 1.9 (and the re-rank formats others send), over ``Infer``.

Each inference route has a core coroutine ``_embed``, ``_predict``, ... that takes the
parsed JSON and returns a ``Reply`` (the answer as Python / numpy objects plus timings);
the Starlette endpoints add body reading, errors, headers and client-disconnect handling,
and /vertex and POST / reuse the cores. Errors are mapped to HTTP in one place,
``error_response``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from tei_ort.errors import (
    BackendError,
    BatchSizeError,
    EmptyError,
    ModelTypeError,
    PayloadTooLargeError,
    RequestError,
)
from tei_ort.infer import Infer, Outcome, failure_label
from tei_ort.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from tei_ort.metrics import Metrics
from tei_ort.model_info import ModelKind
from tei_ort.openapi import SWAGGER_HTML, openapi_document
from tei_ort.postprocess import Mode, OutputSpec, rank_order, sparsify
from tei_ort.schemas import (
    Item,
    parse_decode,
    parse_embed,
    parse_json,
    parse_openai,
    parse_predict,
    parse_rerank,
    parse_similarity,
    parse_tokenize,
    parse_vertex,
)
from tei_ort.settings import Settings

logger = logging.getLogger(__name__)

JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
VERSION = "0.1.0"


class ClientDisconnected(Exception):
    """The client closed the connection before its answer was ready."""


@dataclass
class Reply:
    """An answer and, for inference routes, the numbers behind TEI's ``x-*`` headers."""

    content: Any
    started: float
    chars: int = 0
    tokens: int = 0
    tokenization: float = 0.0
    queue: float = 0.0
    inference: float = 0.0
    timed: bool = False

    def headers(self, compute_type: str) -> dict[str, str]:
        if not self.timed:
            return {}
        elapsed = str(int((time.perf_counter() - self.started) * 1000))
        return {
            "x-compute-type": compute_type,
            "x-compute-time": elapsed,
            "x-compute-characters": str(self.chars),
            "x-compute-tokens": str(self.tokens),
            "x-total-time": elapsed,
            "x-tokenization-time": str(int(self.tokenization * 1000)),
            "x-queue-time": str(int(self.queue * 1000)),
            "x-inference-time": str(int(self.inference * 1000)),
        }


def record_success(metrics: Metrics, reply: Reply, outcome: Outcome, method: str) -> Reply:
    """Fill ``reply``'s timings from ``outcome`` and record the request as TEI does
    (``te_request_success`` and the ``te_request_*`` durations); HTTP and gRPC share it."""
    reply.tokens = outcome.prompt_tokens
    reply.tokenization = outcome.tokenization
    reply.queue = outcome.queue
    reply.inference = outcome.inference
    reply.timed = True
    metrics.request_success.labels(method=method).inc()
    metrics.request.observe(
        time.perf_counter() - reply.started,
        outcome.tokenization,
        outcome.queue,
        outcome.inference,
    )
    return reply


def json_response(
    content: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(content, option=JSON_OPTIONS),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


def error_response(exc: RequestError, *, openai: bool = False) -> Response:
    """The one place errors become HTTP: TEI's body, or OpenAI's on OpenAI routes."""
    if openai:
        body: dict[str, Any] = {
            "message": exc.message,
            "code": exc.status_code,
            "type": exc.error_type,
        }
    else:
        body = exc.to_dict()
    return json_response(body, exc.status_code)


def _chars(items: list[Item] | list[str | tuple[str, str]]) -> int:
    total = 0
    for item in items:
        if isinstance(item, tuple):
            total += len(item[0]) + len(item[1])
        else:
            total += len(item)
    return total


class Api:
    """The routes' shared state and their handlers."""

    def __init__(self, settings: Settings, infer: Infer, metrics: Metrics) -> None:
        self.settings = settings
        self.infer = infer
        self.metrics = metrics
        self.info = infer.info
        self.compute_type = str(getattr(infer.engine, "compute_type", "cpu"))
        self._openapi = orjson.dumps(openapi_document(self.info.kind))
        # TEI serves /similarity on POST / when the container sets TASK=sentence-similarity
        self._similarity_task = os.environ.get("TASK") == "sentence-similarity"

    # -- plumbing -------------------------------------------------------------------------

    async def _body(self, request: Request) -> bytes:
        limit = self.settings.payload_limit
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLargeError(
                "Failed to buffer the request body: length limit exceeded "
                f"({declared} > {limit} bytes)"
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(
                    f"Failed to buffer the request body: length limit exceeded (> {limit} bytes)"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    async def _until_disconnect(self, request: Request, work: Awaitable[Reply]) -> Reply:
        """Run ``work``; cancel it if the client goes away first (its queued inputs drop)."""
        task = asyncio.ensure_future(work)
        watcher = asyncio.ensure_future(_wait_disconnect(request))
        try:
            done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            watcher.cancel()
            raise
        if task in done:
            watcher.cancel()
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise ClientDisconnected

    async def _handle(
        self,
        request: Request,
        core: Callable[[Any], Awaitable[Reply]],
        *,
        openai: bool = False,
    ) -> Response:
        try:
            data = parse_json(await self._body(request))
            reply = await self._until_disconnect(request, core(data))
        except RequestError as exc:
            self.metrics.failure(failure_label(exc))
            logger.error("%s", exc.message)
            return error_response(exc, openai=openai)
        except ClientDisconnected:
            return Response(status_code=499)
        except Exception:  # a bug: log it, answer without a stack trace
            logger.exception("unexpected error")
            self.metrics.failure("inference")
            body: dict[str, Any] = (
                {"message": "internal error", "code": 500, "type": "Backend"}
                if openai
                else {"error": "internal error", "error_type": "Backend"}
            )
            return json_response(body, 500)
        return json_response(reply.content, headers=reply.headers(self.compute_type))

    def _start(self, single: bool, size: int, what: str = "inputs") -> None:
        """Count the request and check its batch, as TEI does before any work."""
        self.metrics.request_count.labels(method="single" if single else "batch").inc()
        if single:
            return
        if size == 0:
            raise EmptyError(f"`{what}` cannot be empty")
        if size > self.settings.max_client_batch_size:
            raise BatchSizeError(
                f"batch size {size} > maximum allowed batch size "
                f"{self.settings.max_client_batch_size}"
            )

    def _finish(self, single: bool, reply: Reply, outcome: Outcome) -> Reply:
        return record_success(self.metrics, reply, outcome, "single" if single else "batch")

    def _truncate(self, truncate: bool | None) -> bool:
        return self.settings.auto_truncate if truncate is None else truncate

    # -- cores ----------------------------------------------------------------------------

    async def _embed(self, data: Any) -> Reply:
        started = time.perf_counter()
        req = parse_embed(data)
        self._start(req.single, len(req.inputs))
        outcome = await self.infer.embed(
            req.inputs,
            OutputSpec(Mode.POOLED, normalize=req.normalize, dimensions=req.dimensions),
            truncate=self._truncate(req.truncate),
            direction=req.truncation_direction,
            prompt_name=req.prompt_name,
            single=req.single,
        )
        content = np.stack(outcome.results)  # (N, D), serialized straight from numpy
        return self._finish(req.single, Reply(content, started, chars=_chars(req.inputs)), outcome)

    async def _embed_all(self, data: Any) -> Reply:
        started = time.perf_counter()
        req = parse_embed(data, pooled=False)
        self._start(req.single, len(req.inputs))
        outcome = await self.infer.embed(
            req.inputs,
            OutputSpec(Mode.TOKENS),
            truncate=self._truncate(req.truncate),
            direction=req.truncation_direction,
            prompt_name=req.prompt_name,
            single=req.single,
        )
        reply = Reply(outcome.results, started, chars=_chars(req.inputs))
        return self._finish(req.single, reply, outcome)

    async def _embed_sparse(self, data: Any) -> Reply:
        started = time.perf_counter()
        req = parse_embed(data, pooled=False)
        self._start(req.single, len(req.inputs))
        outcome = await self.infer.embed(
            req.inputs,
            OutputSpec(Mode.SPARSE),
            truncate=self._truncate(req.truncate),
            direction=req.truncation_direction,
            prompt_name=req.prompt_name,
            single=req.single,
        )
        content = [sparsify(vector) for vector in outcome.results]
        return self._finish(req.single, Reply(content, started, chars=_chars(req.inputs)), outcome)

    def _labelled(self, scores: np.ndarray) -> list[dict[str, Any]]:
        if np.isnan(scores).any():
            raise _nan()
        labels = self.info.id2label
        values = scores.tolist()
        return [
            {"score": values[i], "label": labels.get(i, f"LABEL_{i}")} for i in rank_order(scores)
        ]

    async def _predict(self, data: Any) -> Reply:
        started = time.perf_counter()
        req = parse_predict(data)
        self._start(req.single, len(req.inputs))
        outcome = await self.infer.predict(
            req.inputs,
            raw_scores=req.raw_scores,
            truncate=self._truncate(req.truncate),
            direction=req.truncation_direction,
            single=req.single,
        )
        labelled = [self._labelled(scores) for scores in outcome.results]
        content = labelled[0] if req.single else labelled
        return self._finish(req.single, Reply(content, started, chars=_chars(req.inputs)), outcome)

    async def _rerank(self, data: Any, *, documents_form: bool | None = None) -> Reply:
        started = time.perf_counter()
        req = parse_rerank(data, documents_form=documents_form)
        what = "documents" if req.documents_form else "texts"
        if not req.texts:
            self.metrics.request_count.labels(method="batch").inc()
            raise EmptyError(f"`{what}` cannot be empty")
        if self.info.kind is not ModelKind.RERANKER:
            raise ModelTypeError("Backend error: Inference error: model is not a re-ranker model")
        self._start(False, len(req.texts), what)
        pairs: list[str | tuple[str, str]] = [(req.query, text) for text in req.texts]
        outcome = await self.infer.predict(
            pairs,
            raw_scores=req.raw_scores,
            truncate=self._truncate(req.truncate),
            direction=req.truncation_direction,
            instruction=req.instruction,
        )
        scores = np.asarray([scores[0] for scores in outcome.results], dtype=np.float32)
        if np.isnan(scores).any():
            raise _nan()
        order = rank_order(scores)
        values = scores.tolist()
        chars = len(req.query) * len(req.texts) + sum(len(t) for t in req.texts)
        content: Any
        if not req.documents_form:
            content = []
            for index in order:
                rank: dict[str, Any] = {"index": index}
                if req.return_text:
                    rank["text"] = req.texts[index]
                rank["score"] = values[index]
                content.append(rank)
        else:
            if req.top_n is not None:
                order = order[: req.top_n]
            results = []
            for index in order:
                result: dict[str, Any] = {"index": index, "relevance_score": values[index]}
                if req.return_text:
                    result["document"] = {"text": req.texts[index]}
                results.append(result)
            tokens = outcome.prompt_tokens
            content = {
                "id": str(uuid.uuid4()),
                "model": req.model or self.settings.model_name,
                "results": results,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}},
            }
        return self._finish(False, Reply(content, started, chars=chars), outcome)

    async def _similarity(self, data: Any) -> Reply:
        started = time.perf_counter()
        req = parse_similarity(data)
        if not req.sentences:
            raise EmptyError("`inputs.sentences` cannot be empty")
        items: list[Item] = [req.source_sentence, *req.sentences]
        self._start(False, len(items))
        outcome = await self.infer.embed(
            items,
            OutputSpec(Mode.POOLED, normalize=False),
            truncate=self._truncate(req.truncate),
            direction=req.truncation_direction,
            prompt_name=req.prompt_name,
        )
        vectors = np.stack(outcome.results).astype(np.float64)  # (N, D)
        norms = np.linalg.norm(vectors, axis=1)
        cosine = (vectors[1:] @ vectors[0]) / np.maximum(norms[1:] * norms[0], 1e-12)
        content = cosine.astype(np.float32)
        return self._finish(False, Reply(content, started, chars=_chars(items)), outcome)

    async def _openai(self, data: Any) -> Reply:
        started = time.perf_counter()
        req = parse_openai(data)
        self._start(req.single, len(req.inputs))
        outcome = await self.infer.embed(
            req.inputs,
            OutputSpec(Mode.POOLED, normalize=True, dimensions=req.dimensions),
            truncate=self.settings.auto_truncate,
            single=req.single,
        )
        data_out: list[dict[str, Any]] = []
        for index, vector in enumerate(outcome.results):
            embedding: Any = vector
            if req.encoding_format == "base64":
                embedding = base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
            data_out.append({"object": "embedding", "embedding": embedding, "index": index})
        tokens = outcome.prompt_tokens
        content = {
            "object": "list",
            "data": data_out,
            "model": self.settings.model_name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return self._finish(req.single, Reply(content, started, chars=_chars(req.inputs)), outcome)

    async def _tokenize(self, data: Any) -> Reply:
        req = parse_tokenize(data)
        if not req.single:
            if not req.inputs:
                raise EmptyError("`inputs` cannot be empty")
            if len(req.inputs) > self.settings.max_client_batch_size:
                raise BatchSizeError(
                    f"batch size {len(req.inputs)} > maximum allowed batch size "
                    f"{self.settings.max_client_batch_size}"
                )
        tokens = await self.infer.tokenize(
            req.inputs, add_special_tokens=req.add_special_tokens, prompt_name=req.prompt_name
        )
        content = [
            [
                {"id": t.id, "text": t.text, "special": t.special, "start": t.start, "stop": t.stop}
                for t in row
            ]
            for row in tokens
        ]
        return Reply(content, time.perf_counter())

    async def _decode(self, data: Any) -> Reply:
        req = parse_decode(data)
        if not req.single and len(req.ids) > self.settings.max_client_batch_size:
            raise BatchSizeError(
                f"batch size {len(req.ids)} > maximum allowed batch size "
                f"{self.settings.max_client_batch_size}"
            )
        texts = await self.infer.decode(req.ids, skip_special_tokens=req.skip_special_tokens)
        return Reply(texts, time.perf_counter())

    def _default_core(self) -> Callable[[Any], Awaitable[Reply]]:
        """What POST / and /invocations do for this model kind (as TEI routes them)."""
        if self.info.kind is ModelKind.CLASSIFIER:
            return self._predict
        if self.info.kind is ModelKind.RERANKER:
            return self._rerank
        if self._similarity_task:
            return self._similarity
        if self.infer.is_splade:
            return self._embed_sparse
        return self._embed

    async def _vertex(self, data: Any) -> Reply:
        started = time.perf_counter()
        instances = parse_vertex(data)
        cores: list[Awaitable[Reply]] = []
        for instance in instances:
            if isinstance(instance, dict) and "query" in instance and "texts" in instance:
                cores.append(self._rerank(instance, documents_form=False))
            elif self.info.kind in (ModelKind.CLASSIFIER, ModelKind.RERANKER):
                cores.append(self._predict(instance))
            elif self.infer.is_splade:
                cores.append(self._embed_sparse(instance))
            else:
                cores.append(self._embed(instance))
        replies = await asyncio.gather(*cores)
        return Reply({"predictions": [r.content for r in replies]}, started)

    # -- endpoints ------------------------------------------------------------------------

    async def embed(self, request: Request) -> Response:
        return await self._handle(request, self._embed)

    async def embed_all(self, request: Request) -> Response:
        return await self._handle(request, self._embed_all)

    async def embed_sparse(self, request: Request) -> Response:
        return await self._handle(request, self._embed_sparse)

    async def predict(self, request: Request) -> Response:
        return await self._handle(request, self._predict)

    async def rerank(self, request: Request) -> Response:
        return await self._handle(request, self._rerank)

    async def rerank_documents(self, request: Request) -> Response:
        """/v1/rerank and /v2/rerank: Cohere / Jina bodies."""
        return await self._handle(request, lambda data: self._rerank(data, documents_form=True))

    async def similarity(self, request: Request) -> Response:
        return await self._handle(request, self._similarity)

    async def openai_embeddings(self, request: Request) -> Response:
        return await self._handle(request, self._openai, openai=True)

    async def tokenize(self, request: Request) -> Response:
        return await self._handle(request, self._tokenize)

    async def decode(self, request: Request) -> Response:
        return await self._handle(request, self._decode)

    async def vertex(self, request: Request) -> Response:
        return await self._handle(request, self._vertex)

    async def default(self, request: Request) -> Response:
        return await self._handle(request, self._default_core())

    async def health(self, request: Request) -> Response:
        if await self.infer.health():
            return Response(status_code=200)
        return json_response({"error": "unhealthy", "error_type": "Unhealthy"}, 503)

    async def info_route(self, request: Request) -> Response:
        return json_response(self.info_document())

    async def metrics_route(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    async def openapi(self, request: Request) -> Response:
        return Response(self._openapi, media_type="application/json")

    async def docs(self, request: Request) -> Response:
        return HTMLResponse(SWAGGER_HTML)

    def info_document(self) -> dict[str, Any]:
        return info_document(self.settings, self.infer)


def info_document(settings: Settings, infer: Infer) -> dict[str, Any]:
    """/info (and gRPC's Info): the model and the server's limits."""
    info = infer.info
    model_type: dict[str, Any]
    if info.kind is ModelKind.EMBEDDING:
        pooling = info.pooling.value if info.pooling is not None else "cls"
        model_type = {"embedding": {"pooling": pooling}}
    else:
        labels = {str(i): label for i, label in sorted(info.id2label.items())}
        classifier = {"id2label": labels, "label2id": info.label2id}
        model_type = {info.kind.value: classifier}
    return {
        "model_id": settings.model_id,
        "model_sha": info.revision,
        "model_dtype": infer.engine.dtype or settings.dtype or "float32",
        "served_model_name": settings.model_name,
        "model_type": model_type,
        "max_concurrent_requests": settings.max_concurrent_requests,
        "max_input_length": infer.max_input_length,
        "max_batch_tokens": settings.max_batch_tokens,
        "max_batch_requests": infer.max_batch_requests,
        "max_client_batch_size": settings.max_client_batch_size,
        "auto_truncate": settings.auto_truncate,
        "tokenization_workers": settings.tokenization_workers,
        "version": VERSION,
        "sha": os.environ.get("TEI_ORT_GIT_SHA"),
        "docker_label": os.environ.get("DOCKER_LABEL"),
    }


def _nan() -> RequestError:
    return BackendError("score is NaN")


async def _wait_disconnect(request: Request) -> None:
    """Return when the client disconnects (the body has already been read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
