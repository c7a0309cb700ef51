"""Every HTTP route of TEI 1.9 (and the re-rank formats others send): thin adapters.

Each inference route has a core coroutine (``_embed``, ``_predict``, ...) that parses the
JSON body into a request (``schemas``), calls the shared handler (``serving.handlers``) and
shapes the handler's answer as TEI's JSON; the Starlette endpoints add body reading,
errors, headers and client-disconnect handling, and /vertex and POST / reuse the cores.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tei_ort.errors import RequestError
from tei_ort.http.cohere import Version, cohere_content, parse_cohere
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
from tei_ort.serving.embedding_types import EmbeddingType, encode_matrix, rows_base64, to_base64
from tei_ort.serving.fanout import gather_in_window
from tei_ort.serving.handlers import Handlers, Label
from tei_ort.serving.infer import failure_label
from tei_ort.serving.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from tei_ort.serving.permits import Claim
from tei_ort.serving.postprocess import Hybrid, Mode, sparsify
from tei_ort.serving.reply import Reply
from tei_ort.serving.requests import EmbedRequest, PredictRequest, RerankRequest
from tei_ort.serving.validation import is_splade

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

    async def _handle(
        self, request: Request, core: Core, *, openai: bool = False, cohere: bool = False
    ) -> Response:
        if not is_json_content_type(request.headers.get("content-type")):
            return unsupported_media_type()  # before the body, as axum's Json extractor
        try:
            data = parse_json(await self._body(request))
            reply = await until_disconnect(request, core(data))
        except RequestError as exc:
            self.metrics.failure(failure_label(exc))
            logger.error("%s", exc.message)
            return error_response(exc, openai=openai, cohere=cohere)
        except ClientDisconnected:
            return Response(status_code=499)
        except Exception:
            logger.exception("unexpected error")
            self.metrics.failure("inference")
            return internal_error_response(openai=openai, cohere=cohere)
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
        return await self._pooled(parse_embed(data))

    async def _pooled(self, req: EmbedRequest, place: Claim | None = None) -> Reply:
        """/embed's answer: (N, D) straight from numpy, tei-ort's typed / base64 rows, one
        vector per chunk (late chunking) or BGE-M3's outputs."""
        if req.chunking is not None:  # late chunking: one vector per chunk
            reply = await self.handlers.embed_chunks(req, place=place)
            reply.content = [{"spans": c.spans, "embeddings": c.vectors} for c in reply.content]
            return reply
        reply = await self.handlers.embed(req, place=place)
        if req.outputs is not None:  # BGE-M3's heads, one engine pass
            reply.content = [_hybrid_json(answer, req.outputs) for answer in reply.content]
        elif req.embedding_types or req.encoding_format == "base64":
            kind = req.embedding_types[0] if req.embedding_types else EmbeddingType.FLOAT
            vectors = reply.content[kind] if req.embedding_types else reply.content
            reply.content = rows_base64(vectors) if req.encoding_format == "base64" else vectors
        return reply

    async def _cohere(self, data: Any, version: Version) -> Reply:
        req = parse_cohere(data, version)
        embed = req.embed_request(self.handlers.prompt_for(req.input_type))
        reply = await self.handlers.embed(embed)
        reply.content = cohere_content(req, reply.content, reply.tokens)
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

    async def _sparse(self, req: EmbedRequest, place: Claim | None = None) -> Reply:
        reply = await self.handlers.embed(req, Mode.SPARSE, place=place)
        reply.content = [sparsify(vector) for vector in reply.content]
        return reply

    async def _predict(self, data: Any) -> Reply:
        return await self._labelled(parse_predict(data))

    async def _labelled(self, req: PredictRequest, place: Claim | None = None) -> Reply:
        reply = await self.handlers.predict(req, place=place)
        labelled = [_labels(labels) for labels in reply.content]
        reply.content = labelled[0] if req.single else labelled
        return reply

    async def _rerank(self, data: Any, *, documents_form: bool | None = None) -> Reply:
        return await self._ranked(parse_rerank(data, documents_form=documents_form))

    async def _ranked(self, req: RerankRequest, place: Claim | None = None) -> Reply:
        reply = await self.handlers.rerank(req, place=place)
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
        kind = req.embedding_type
        embed = EmbedRequest(
            req.inputs,
            req.single,
            normalize=True,
            dimensions=req.dimensions,
            embedding_types=() if kind is EmbeddingType.FLOAT else (kind,),
        )
        reply = await self.handlers.embed(embed)
        vectors = reply.content if kind is EmbeddingType.FLOAT else reply.content[kind]
        data_out: list[dict[str, Any]] = []
        for index, vector in enumerate(vectors):
            embedding: Any = vector
            if req.encoding_format == "base64":
                embedding = to_base64(vector)  # the raw little-endian bytes of the type
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
        """Every instance parsed first (as TEI does), each bounded by
        ``--max-client-batch-size`` inputs, any number of them (as TEI); then the body takes
        its place in line for permits, one place per instance side by side, so that a big
        body is admitted whole in its arrival order: it waits for older requests and younger
        ones wait for it. Instances run in order, at most ``--max-concurrent-requests`` at
        once besides those whose places were granted permits; the first failure cancels the
        others."""
        started = time.perf_counter()
        parts = [self._vertex_part(instance) for instance in parse_vertex(data)]
        permits = self.handlers.infer.permits
        places = permits.claims([size for size, _ in parts])

        def part(index: int) -> Callable[[], Awaitable[Reply]]:
            async def run() -> Reply:
                try:
                    return await parts[index][1](places[index])
                finally:
                    permits.leave(places[index])

            return run

        try:
            replies = await gather_in_window(
                [part(i) for i in range(len(parts))],
                self.settings.max_concurrent_requests,
                ready=lambda index: permits.wait(places[index]),
            )
        finally:
            for place in places:  # the places of instances never started
                permits.leave(place)
        return Reply({"predictions": [r.content for r in replies]}, started)

    def _vertex_part(self, instance: Any) -> tuple[int, Callable[[Claim], Awaitable[Reply]]]:
        """One /vertex instance (parsed now): its count of inputs and the work that answers
        it from a place in line."""
        if isinstance(instance, dict) and "query" in instance and "texts" in instance:
            rerank = parse_rerank(instance, documents_form=False)
            return len(rerank.texts), lambda place: self._ranked(rerank, place)
        if self.info.kind in (ModelKind.CLASSIFIER, ModelKind.RERANKER):
            predict = parse_predict(instance)
            return len(predict.inputs), lambda place: self._labelled(predict, place)
        if is_splade(self.info):
            sparse = parse_embed(instance, pooled=False)
            return len(sparse.inputs), lambda place: self._sparse(sparse, place)
        embed = parse_embed(instance)
        return len(embed.inputs), lambda place: self._pooled(embed, place)

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

    async def cohere_embed_v2(self, request: Request) -> Response:
        """Cohere's /v2/embed (errors in Cohere's shape)."""
        return await self._handle(request, lambda data: self._cohere(data, 2), cohere=True)

    async def cohere_embed_v1(self, request: Request) -> Response:
        """Cohere's /v1/embed (errors in Cohere's shape)."""
        return await self._handle(request, lambda data: self._cohere(data, 1), cohere=True)

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
