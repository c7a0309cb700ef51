"""Every HTTP route of TEI 1.9 (and the re-rank formats others send): thin adapters.

Each inference route has a core coroutine (``_embed``, ``_predict``, ...) that parses the
JSON body into a request (``schemas``), calls the shared handler (``serving.handlers``) and
shapes the handler's answer as TEI's JSON; the Starlette endpoints add body reading,
errors, headers and client-disconnect handling, and /vertex and POST / reuse the cores.
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tei_ort.errors import RequestError
from tei_ort.http.framework import is_json_content_type, unsupported_media_type
from tei_ort.http.openapi import openapi_document
from tei_ort.http.openapi_schemas import Limits
from tei_ort.http.responses import (
    ClientDisconnected,
    error_response,
    internal_error_response,
    json_response,
    read_body,
    until_disconnect,
)
from tei_ort.http.schemas import (
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
from tei_ort.model.info import ModelKind
from tei_ort.model.tokenization import Token
from tei_ort.serving import validation
from tei_ort.serving.fanout import gather_or_cancel
from tei_ort.serving.handlers import Handlers, Label
from tei_ort.serving.infer import failure_label
from tei_ort.serving.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from tei_ort.serving.postprocess import Hybrid, Mode, sparsify
from tei_ort.serving.reply import Reply
from tei_ort.serving.requests import EmbedRequest, PredictRequest, RerankRequest
from tei_ort.serving.validation import is_splade
from tei_ort.serving.vector_codec import encode_matrix

logger = logging.getLogger(__name__)

Core = Callable[[Any], Awaitable[Reply]]


def _labels(labels: list[Label]) -> list[dict[str, Any]]:
    return [{"score": label.score, "label": label.label} for label in labels]


def _tokens_json(rows: list[list[Token]]) -> orjson.Fragment:
    """/tokenize's answer, serialized (orjson embeds the fragment as it is)."""
    return orjson.Fragment(
        orjson.dumps(
            [
                [
                    {
                        "id": t.id,
                        "text": t.text,
                        "special": t.special,
                        "start": t.start,
                        "stop": t.stop,
                    }
                    for t in row
                ]
                for row in rows
            ]
        )
    )


def _hybrid_json(answer: Hybrid, outputs: tuple[str, ...]) -> dict[str, Any]:
    """One input's /embed `outputs` answer."""
    parts: dict[str, Any] = {}
    if "dense" in outputs:
        parts["dense"] = answer.dense
    if "sparse" in outputs:
        parts["sparse"] = sparsify(answer.sparse)
    if "multi_vector" in outputs:
        parts["multi_vector"] = answer.multi
    return parts


class Routes:
    """The Starlette endpoints over the shared handlers."""

    def __init__(self, handlers: Handlers) -> None:
        self.handlers = handlers
        self.settings = handlers.settings
        self.metrics = handlers.metrics
        self.info = handlers.info
        self.limits = Limits(
            max_client_batch_size=self.settings.max_client_batch_size,
            vocab_size=handlers.infer.tokenizer.vocab_size,
            embedding_size=handlers.infer.encoder.embedding_size,
            prompt_names=tuple(self.info.prompts),
            default_mode=handlers.default_mode(),
            late_interaction=None
            if self.info.late_interaction is None
            else self.info.late_interaction.format.value,
        )
        self.openapi_bytes = orjson.dumps(openapi_document(self.limits))

    async def _handle(self, request: Request, core: Core, *, openai: bool = False) -> Response:
        if not is_json_content_type(request.headers.get("content-type")):
            return unsupported_media_type()  # before the body, as axum's Json extractor
        try:
            data = parse_json(await self._body(request))
            reply = await until_disconnect(request, core(data))
        except RequestError as exc:
            self.metrics.failure(failure_label(exc))
            logger.error("%s", exc.message)
            return error_response(exc, openai=openai)
        except ClientDisconnected:
            return Response(status_code=499)
        except Exception:
            logger.exception("unexpected error")
            self.metrics.failure("inference")
            return internal_error_response(openai=openai)
        headers = reply.headers(self.handlers.compute_type)
        return json_response(reply.content, headers=headers)

    async def _body(self, request: Request) -> bytes:
        try:
            return await read_body(request, self.settings.payload_limit)
        except ClientDisconnected:
            # a client that went away mid-body is a dropped request, not a server fault
            self.metrics.failure("dropped")
            logger.info("client disconnected before sending the whole request body")
            raise

    # -- cores: parse, handle, shape ------------------------------------------------------------

    async def _embed(self, data: Any) -> Reply:
        return await self._embed_request(parse_embed(data))

    async def _embed_request(self, req: EmbedRequest) -> Reply:
        if req.chunking is not None:  # late chunking: one vector per chunk
            reply = await self.handlers.embed_chunks(req)
            reply.content = [{"spans": c.spans, "embeddings": c.vectors} for c in reply.content]
            return reply
        reply = await self.handlers.embed(req)  # (N, D) straight from numpy
        if req.outputs is not None:  # BGE-M3's heads, one engine pass
            reply.content = [_hybrid_json(answer, req.outputs) for answer in reply.content]
        return reply

    async def _embed_all(self, data: Any) -> Reply:
        req = parse_embed(data, pooled=False, tokens=True)
        reply = await self.handlers.embed(req, Mode.TOKENS)
        if req.encoding_format != "float" or req.embedding_dtype != "float32":
            reply.content = [
                encode_matrix(m, req.encoding_format, req.embedding_dtype) for m in reply.content
            ]
        return reply

    async def _embed_sparse(self, data: Any) -> Reply:
        return await self._sparse(parse_embed(data, pooled=False))

    async def _sparse(self, req: EmbedRequest) -> Reply:
        reply = await self.handlers.embed(req, Mode.SPARSE)
        reply.content = [sparsify(vector) for vector in reply.content]
        return reply

    async def _predict(self, data: Any) -> Reply:
        return await self._labelled(parse_predict(data))

    async def _labelled(self, req: PredictRequest) -> Reply:
        reply = await self.handlers.predict(req)
        labelled = [_labels(labels) for labels in reply.content]
        reply.content = labelled[0] if req.single else labelled
        return reply

    async def _rerank(self, data: Any, *, documents_form: bool | None = None) -> Reply:
        return await self._ranked(parse_rerank(data, documents_form=documents_form))

    async def _ranked(self, req: RerankRequest) -> Reply:
        reply = await self.handlers.rerank(req)
        ranks: list[tuple[int, float]] = reply.content
        if not req.documents_form:
            content = []
            for index, score in ranks:
                rank: dict[str, Any] = {"index": index}
                if req.return_text:
                    rank["text"] = req.texts[index]
                rank["score"] = score
                content.append(rank)
            reply.content = content
            return reply
        results = []
        for index, score in ranks[: req.top_n] if req.top_n is not None else ranks:
            result: dict[str, Any] = {"index": index, "relevance_score": score}
            if req.return_text:
                result["document"] = {"text": req.texts[index]}
            results.append(result)
        reply.content = {
            "id": str(uuid.uuid4()),
            "model": req.model or self.settings.model_name,
            "results": results,
            "usage": {"prompt_tokens": reply.tokens, "total_tokens": reply.tokens},
            "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}},
        }
        return reply

    async def _similarity(self, data: Any) -> Reply:
        return await self.handlers.similarity(parse_similarity(data))

    async def _openai(self, data: Any) -> Reply:
        req = parse_openai(data)
        embed = EmbedRequest(req.inputs, req.single, normalize=True, dimensions=req.dimensions)
        reply = await self.handlers.embed(embed)
        data_out: list[dict[str, Any]] = []
        for index, vector in enumerate(reply.content):
            embedding: Any = vector
            if req.encoding_format == "base64":
                embedding = base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
            data_out.append({"object": "embedding", "embedding": embedding, "index": index})
        reply.content = {
            "object": "list",
            "data": data_out,
            "model": self.settings.model_name,
            "usage": {"prompt_tokens": reply.tokens, "total_tokens": reply.tokens},
        }
        return reply

    async def _tokenize(self, data: Any) -> Reply:
        reply = await self.handlers.tokenize(parse_tokenize(data))
        rows: list[list[Token]] = reply.content
        # up to max_input_length x 250 tokens: built and serialized off the event loop
        reply.content = await self.handlers.infer.offload(lambda: _tokens_json(rows))
        return reply

    async def _decode(self, data: Any) -> Reply:
        return await self.handlers.decode(parse_decode(data))

    def _default_core(self) -> Core:
        """What POST / and /invocations do for this model kind (as TEI routes them)."""
        cores: dict[str, Core] = {
            "predict": self._predict,
            "rerank": self._rerank,
            "similarity": self._similarity,
            "embed_sparse": self._embed_sparse,
            "embed": self._embed,
        }
        return cores[self.handlers.default_mode()]

    async def _vertex(self, data: Any) -> Reply:
        """Every instance parsed first (as TEI does), then all run together; the first
        failure cancels the others. At most ``--max-client-batch-size`` instances (each of
        at most as many inputs), so that one body cannot queue more than that squared
        (TEI bounds only each instance; 2 MB of small instances were ~450k inputs)."""
        started = time.perf_counter()
        instances = parse_vertex(data)
        if len(instances) > self.settings.max_client_batch_size:
            validation.check_batch(len(instances), self.settings.max_client_batch_size)
        parts = [self._vertex_part(instance) for instance in instances]
        replies = await gather_or_cancel(run() for run in parts)
        return Reply({"predictions": [r.content for r in replies]}, started)

    def _vertex_part(self, instance: Any) -> Callable[[], Awaitable[Reply]]:
        """The work that answers one /vertex instance (parsed now)."""
        if isinstance(instance, dict) and "query" in instance and "texts" in instance:
            rerank = parse_rerank(instance, documents_form=False)
            return lambda: self._ranked(rerank)
        if self.info.kind in (ModelKind.CLASSIFIER, ModelKind.RERANKER):
            predict = parse_predict(instance)
            return lambda: self._labelled(predict)
        if is_splade(self.info):
            sparse = parse_embed(instance, pooled=False)
            return lambda: self._sparse(sparse)
        embed = parse_embed(instance)
        return lambda: self._embed_request(embed)

    # -- endpoints ------------------------------------------------------------------------------

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
        if await self.handlers.infer.health():
            return Response(status_code=200)
        return json_response({"error": "unhealthy", "error_type": "Unhealthy"}, 503)

    async def info_route(self, request: Request) -> Response:
        return json_response(self.handlers.info_document())

    async def metrics_route(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    async def openapi(self, request: Request) -> Response:
        return Response(self.openapi_bytes, media_type="application/json")
