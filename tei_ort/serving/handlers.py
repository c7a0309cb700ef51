"""The request handlers every front end shares: validate, run through ``Infer``, rank, record.

HTTP (``tei_ort.http.routes``) and gRPC (``tei_ort.grpc.service``) are thin adapters: they
turn a body or a message into a request of ``requests``, call a handler here and turn the
``Reply``'s protocol-neutral content (numpy arrays, ranked tuples, tokens) into their own
answer. Counting (``te_request_count``), TEI's checks (``validation``), scoring and ranking
happen here once.

A handler counts the request as ``single`` or ``batch`` by ``single`` and takes its
concurrency permit at once (429 when none is free) when ``immediate`` is true, as TEI does
for a single input; the inputs of a batch, or of a gRPC stream, wait for theirs in the
request's place in line (``permits``). ``place``: a place the caller took already (each
instance of a /vertex body); the caller gives it up when the handler returns or fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tei_ort.errors import EmptyError, UnhealthyError, ValidationError
from tei_ort.model.info import ModelInfo, ModelKind
from tei_ort.model.late_config import LateFormat
from tei_ort.model.tokenization import Direction, Token
from tei_ort.serving import validation
from tei_ort.serving.calibration import calibratable
from tei_ort.serving.embedding_types import EmbeddingType, Ranges, check_packable, encode
from tei_ort.serving.encoding import Item
from tei_ort.serving.fanout import gather_or_cancel
from tei_ort.serving.infer import Infer, Outcome
from tei_ort.serving.input_types import input_type_prompts
from tei_ort.serving.late_chunking import Chunked, late_chunk_vectors, plan_document
from tei_ort.serving.late_scoring import hybrid_scores, maxsim
from tei_ort.serving.permits import Claim
from tei_ort.serving.postprocess import Mode, OutputSpec, rank_order
from tei_ort.serving.reply import Reply, record_success
from tei_ort.serving.requests import (
    DecodeRequest,
    EmbedRequest,
    PredictRequest,
    RerankRequest,
    SimilarityRequest,
    TokenizeRequest,
)
from tei_ort.settings import Settings
from tei_ort.version import TEI_VERSION

F32 = NDArray[np.float32]


@dataclass(frozen=True)
class Label:
    """One classifier label and its score."""

    label: str
    score: float


def chars(items: list[Item] | list[str | tuple[str, str]]) -> int:
    """``x-compute-characters``: the characters of every text of a request."""
    total = 0
    for item in items:
        if isinstance(item, tuple):
            total += len(item[0]) + len(item[1])
        else:
            total += len(item)
    return total


def ranked(scores: F32) -> list[tuple[int, float]]:
    """(index, score) best first, ties as TEI orders them; a NaN score fails the request."""
    validation.check_scores(scores)
    values = scores.tolist()
    return [(index, values[index]) for index in rank_order(scores)]


def _label2id(info: ModelInfo) -> dict[str, int]:
    """config.json's ``label2id`` as written (TEI shows it verbatim, even where it disagrees
    with ``id2label``); derived from ``id2label`` when the config has none."""
    declared = info.config.get("label2id")
    if isinstance(declared, dict) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in declared.values()
    ):
        return {str(label): int(index) for label, index in declared.items()}
    return info.label2id


#: an /embed answer with ``embedding_types``: each type's (N, D) or (N, D / 8) array
TypedEmbeddings = dict[EmbeddingType, NDArray[Any]]


class Handlers:
    """TEI's operations over one ``Infer`` (its model, queue and engine)."""

    def __init__(self, settings: Settings, infer: Infer) -> None:
        self.settings = settings
        self.infer = infer
        self.metrics = infer.metrics
        self.info = infer.info
        # Cohere's input_type -> prompt name (a bad --input-type-prompt stops the start)
        self.input_types = input_type_prompts(self.info.prompts, settings.input_type_prompt)

    def prompt_for(self, input_type: str | None) -> str | None:
        """The prompt name a Cohere ``input_type`` is embedded with (None: as is)."""
        return None if input_type is None else self.input_types.get(input_type)

    @property
    def compute_type(self) -> str:
        """``x-compute-type``: what the engine runs on, as it declares."""
        return self.infer.engine.compute_type

    # -- plumbing ---------------------------------------------------------------------------

    def count(self, single: bool) -> float:
        """Count the request (``te_request_count``) before any check, as TEI does."""
        self.metrics.request_count.labels(method="single" if single else "batch").inc()
        return time.perf_counter()

    def truncate(self, value: bool | None) -> bool:
        return self.settings.auto_truncate if value is None else value

    def _done(self, single: bool, reply: Reply, outcome: Outcome) -> Reply:
        return record_success(self.metrics, reply, outcome, "single" if single else "batch")

    def _check_batch(self, single: bool, size: int, what: str = "inputs") -> None:
        if not single:
            validation.check_batch(size, self.settings.max_client_batch_size, what)

    # -- embeddings -------------------------------------------------------------------------

    async def embed(
        self,
        req: EmbedRequest,
        mode: Mode = Mode.POOLED,
        *,
        immediate: bool | None = None,
        place: Claim | None = None,
    ) -> Reply:
        """Pooled vectors (N, D) for POOLED, a (T_i, H) per input for TOKENS (a late-
        interaction model's (n_i, D) vectors), a (V,) for SPARSE, a ``Hybrid`` for POOLED
        with ``req.outputs`` (BGE-M3), in input order."""
        started = self.count(req.single)
        self._check_batch(req.single, len(req.inputs))
        if mode is Mode.POOLED and req.outputs is not None:
            mode = Mode.HYBRID
        if mode in (Mode.POOLED, Mode.HYBRID):
            spec = OutputSpec(
                mode, normalize=req.normalize, dimensions=req.dimensions, query=req.query
            )
        else:
            spec = OutputSpec(mode, query=req.query)
        ranges = self.check_types(req) if req.embedding_types and mode is Mode.POOLED else None
        outcome = await self.infer.embed(
            req.inputs,
            spec,
            truncate=self.truncate(req.truncate),
            direction=req.truncation_direction,
            prompt_name=req.prompt_name,
            single=req.single if immediate is None else immediate,
            place=place,
        )
        content: Any = np.stack(outcome.results) if mode is Mode.POOLED else outcome.results
        if req.embedding_types and mode is Mode.POOLED:
            content = self.typed(content, req.embedding_types, ranges)  # (N, D) float32 in
        reply = Reply(content, started, chars=chars(req.inputs))
        return self._done(req.single, reply, outcome)

    def output_width(self, dimensions: int | None) -> int | None:
        """The length of the pooled vectors a request gets (None: the model does not say)."""
        size = self.infer.encoder.embedding_size
        if size is None:
            return None
        return size if dimensions is None else min(dimensions, size)

    def check_types(self, req: EmbedRequest) -> Ranges | None:
        """Refuse, before any inference, a type the request's vectors cannot take; the
        int8 / uint8 ranges for the request's dimensions and normalization."""
        width = self.output_width(req.dimensions)
        for kind in req.embedding_types:
            if width is not None:
                check_packable(width, kind)
        if not any(kind.calibrated for kind in req.embedding_types):
            return None
        calibration = self.infer.calibrator.ready
        if calibration is None:
            if not calibratable(self.info):
                return None  # the route refuses the model itself (check_embed_route)
            raise UnhealthyError(
                "int8 / uint8 embeddings need the model's calibrated ranges, which could "
                "not be computed at start (see the server log)"
            )
        return calibration.ranges(req.dimensions, req.normalize)

    @staticmethod
    def typed(
        vectors: F32, kinds: tuple[EmbeddingType, ...], ranges: Ranges | None
    ) -> TypedEmbeddings:
        """``vectors`` (N, D) in each of ``kinds``, in the order asked."""
        for kind in kinds:
            check_packable(vectors.shape[-1], kind)  # a model that did not declare D
        return {kind: encode(vectors, kind, ranges) for kind in kinds}

    async def embed_chunks(self, req: EmbedRequest, place: Claim | None = None) -> Reply:
        """One vector per chunk of each input: ``Chunked`` answers, in input order."""
        chunking = req.chunking
        assert chunking is not None
        started = self.count(req.single)
        self._check_batch(req.single, len(req.inputs))
        spec = OutputSpec(Mode.POOLED, normalize=req.normalize, dimensions=req.dimensions)
        self.infer.encoder.check_embed(spec)
        texts = validation.check_chunked_inputs(self.info, req.inputs, chunking)
        window = self.infer.max_input_length
        prompt = self.infer.encoder.prompt(req.prompt_name)
        tokenizer = self.infer.tokenizer
        documents = await self.infer.offload(
            lambda: [
                plan_document(tokenizer, text, i, chunking, prompt, window)
                for i, text in enumerate(texts)
            ]
        )
        truncate = self.truncate(req.truncate)
        if not chunking.late:  # the baseline: each chunk's text embedded on its own
            pieces: list[Item] = [
                text[s:e] for text, d in zip(texts, documents, strict=True) for s, e in d.plan.spans
            ]
            outcome = await self.infer.embed(
                pieces,
                spec,
                truncate=truncate,
                direction=req.truncation_direction,
                prompt_name=req.prompt_name,
                place=place,
            )
            content, at = [], 0
            for document in documents:
                count = len(document.plan.spans)
                vectors = np.stack(outcome.results[at : at + count])  # (C, D)
                content.append(Chunked(document.plan.spans, vectors))
                at += count
        else:
            windows: list[Item] = [ids for d in documents for ids in d.window_ids]
            outcome = await self.infer.embed(
                windows, OutputSpec(Mode.TOKENS), truncate=False, no_prompt=True, place=place
            )
            assert self.info.pooling is not None
            content = late_chunk_vectors(
                documents,
                outcome.results,
                self.info.pooling,
                window,
                dense=self.infer.executor.dense,
                normalize=spec.normalize,
                dimensions=spec.dimensions,
            )
        reply = Reply(content, started, chars=chars(req.inputs))
        return self._done(req.single, reply, outcome)

    async def similarity(self, req: SimilarityRequest) -> Reply:
        """The cosine of each sentence with the source sentence: (N,) float32."""
        started = time.perf_counter()
        if not req.sentences:
            raise EmptyError("`inputs.sentences` cannot be empty")
        items: list[Item] = [req.source_sentence, *req.sentences]
        self.count(False)
        validation.check_batch(len(items), self.settings.max_client_batch_size)
        if self.info.late_interaction is not None:  # the source is the query: MaxSim
            scores, outcome = await self._late_scores(
                req.source_sentence,
                req.sentences,
                self.truncate(req.truncate),
                req.truncation_direction,
                None,
            )
            return self._done(False, Reply(scores, started, chars=chars(items)), outcome)
        outcome = await self.infer.embed(
            items,
            OutputSpec(Mode.POOLED, normalize=False),
            truncate=self.truncate(req.truncate),
            direction=req.truncation_direction,
            prompt_name=req.prompt_name,
        )
        vectors = np.stack(outcome.results).astype(np.float64)  # (N, D)
        norms = np.linalg.norm(vectors, axis=1)  # (N,)
        cosine = (vectors[1:] @ vectors[0]) / np.maximum(norms[1:] * norms[0], 1e-12)
        reply = Reply(cosine.astype(np.float32), started, chars=chars(items))
        return self._done(False, reply, outcome)

    # -- scores -----------------------------------------------------------------------------

    def labelled(self, scores: F32) -> list[Label]:
        """One input's scores as labels, best first (a NaN score fails the request)."""
        labels = self.info.id2label
        return [Label(labels.get(i, f"LABEL_{i}"), score) for i, score in ranked(scores)]

    async def predict(
        self, req: PredictRequest, *, immediate: bool | None = None, place: Claim | None = None
    ) -> Reply:
        """Labelled scores, one list per input, each best first."""
        started = self.count(req.single)
        self._check_batch(req.single, len(req.inputs))
        outcome = await self.infer.predict(
            req.inputs,
            raw_scores=req.raw_scores,
            truncate=self.truncate(req.truncate),
            direction=req.truncation_direction,
            single=req.single if immediate is None else immediate,
            place=place,
        )
        content = [self.labelled(scores) for scores in outcome.results]
        return self._done(req.single, Reply(content, started, chars=chars(req.inputs)), outcome)

    async def rerank(
        self,
        req: RerankRequest,
        check_route: Callable[[ModelInfo], None] = validation.check_rerank_route,
        *,
        place: Claim | None = None,
    ) -> Reply:
        """(index, score) of every text, best first; ``check_route`` refuses a model that
        does not re-rank, with the front end's text."""
        started = time.perf_counter()
        what = "documents" if req.documents_form else "texts"
        if not req.texts:
            self.count(False)
            raise EmptyError(f"`{what}` cannot be empty")
        late = self.info.late_interaction is not None
        if not late:
            check_route(self.info)
        self.count(False)
        validation.check_batch(len(req.texts), self.settings.max_client_batch_size, what)
        text_chars = len(req.query) * len(req.texts) + sum(len(t) for t in req.texts)
        if late:  # query and documents encoded apart, scored by MaxSim (or BGE-M3's mix)
            scores, outcome = await self._late_scores(
                req.query,
                req.texts,
                self.truncate(req.truncate),
                req.truncation_direction,
                req.hybrid_weights,
            )
            return self._done(False, Reply(ranked(scores), started, chars=text_chars), outcome)
        if req.hybrid_weights is not None:
            raise ValidationError("Input validation error: `hybrid_weights` needs a BGE-M3 model")
        pairs: list[str | tuple[str, str]] = [(req.query, text) for text in req.texts]
        outcome = await self.infer.predict(
            pairs,
            raw_scores=req.raw_scores,
            truncate=self.truncate(req.truncate),
            direction=req.truncation_direction,
            instruction=req.instruction,
            place=place,
        )
        scores = np.asarray([scores[0] for scores in outcome.results], dtype=np.float32)  # (N,)
        return self._done(False, Reply(ranked(scores), started, chars=text_chars), outcome)

    async def _late_scores(
        self,
        query: str,
        texts: list[str],
        truncate: bool,
        direction: Direction,
        weights: tuple[float, float, float] | None,
    ) -> tuple[F32, Outcome]:
        """MaxSim of ``query`` (encoded as a query) with each text (as a document); with
        ``weights``, BGE-M3's dense + sparse + ColBERT mix. Both sides run together."""
        late = self.info.late_interaction
        assert late is not None
        if weights is not None and late.format is not LateFormat.BGE_M3:
            raise ValidationError("Input validation error: `hybrid_weights` needs a BGE-M3 model")
        mode = Mode.TOKENS if weights is None else Mode.HYBRID
        queried, documents = await gather_or_cancel(
            [
                self.infer.embed(
                    [query],
                    OutputSpec(mode, normalize=True, query=True),
                    truncate=truncate,
                    direction=direction,
                ),
                self.infer.embed(
                    list(texts),
                    OutputSpec(mode, normalize=True),
                    truncate=truncate,
                    direction=direction,
                ),
            ]
        )
        if weights is None:
            mean = late.scores_by_query_length
            scores = maxsim(queried.results[0], documents.results, mean=mean)
        else:
            scores = hybrid_scores(queried.results[0], documents.results, weights)
        size = len(texts)
        outcome = Outcome(
            results=documents.results,
            prompt_tokens=queried.prompt_tokens + documents.prompt_tokens,
            tokenization=documents.tokenization + queried.tokenization / size,
            queue=documents.queue + queried.queue / size,
            inference=documents.inference + queried.inference / size,
        )
        return scores, outcome

    # -- tokenizer --------------------------------------------------------------------------

    async def tokenize(self, req: TokenizeRequest) -> Reply:
        """The tokens of each input (not counted as inference, as in TEI)."""
        self._check_batch(req.single, len(req.inputs))
        tokens: list[list[Token]] = await self.infer.tokenize(
            req.inputs, add_special_tokens=req.add_special_tokens, prompt_name=req.prompt_name
        )
        return Reply(tokens, time.perf_counter())

    async def decode(self, req: DecodeRequest) -> Reply:
        self._check_batch(req.single, len(req.ids))
        texts = await self.infer.decode(req.ids, skip_special_tokens=req.skip_special_tokens)
        return Reply(texts, time.perf_counter())

    # -- the model --------------------------------------------------------------------------

    def default_mode(self) -> str:
        """The operation POST / and /invocations run for this model kind (as TEI routes)."""
        if self.info.kind is ModelKind.CLASSIFIER:
            return "predict"
        if self.info.kind is ModelKind.RERANKER:
            return "rerank"
        if self.settings.task == "sentence-similarity":
            return "similarity"
        if validation.is_splade(self.info):
            return "embed_sparse"
        return "embed"

    def info_document(self) -> dict[str, Any]:
        """/info (and gRPC's Info): the model and the server's limits, with TEI's keys and
        values: ``model_sha`` is ``--revision`` as given (null without it, even for a
        local directory) and ``version`` the TEI release served."""
        info = self.info
        settings = self.settings
        model_type: dict[str, Any]
        if info.kind is ModelKind.EMBEDDING:
            pooling = info.pooling.value if info.pooling is not None else "cls"
            model_type = {"embedding": {"pooling": pooling}}
        else:
            labels = {str(i): label for i, label in sorted(info.id2label.items())}
            classifier = {"id2label": labels, "label2id": _label2id(info)}
            model_type = {info.kind.value: classifier}
        return {
            "model_id": settings.model_id,
            "model_sha": settings.revision,
            "model_dtype": self.infer.engine.dtype,
            "served_model_name": settings.model_name,
            "model_type": model_type,
            "max_concurrent_requests": settings.max_concurrent_requests,
            "max_input_length": self.infer.max_input_length,
            "max_batch_tokens": settings.max_batch_tokens,
            "max_batch_requests": self.infer.max_batch_requests,
            "max_client_batch_size": settings.max_client_batch_size,
            "auto_truncate": settings.auto_truncate,
            "tokenization_workers": settings.tokenization_workers,
            "version": TEI_VERSION,
            "sha": settings.git_sha,
            "docker_label": settings.docker_label,
            # tei-ort: typed embeddings (README "Typed embeddings and Cohere's embed API")
            **self.embedding_types_document(),
        }

    def embedding_types_document(self) -> dict[str, Any]:
        """/info's tei-ort keys: the types served, the int8 / uint8 calibration, the
        Cohere input types that map to a prompt."""
        if not calibratable(self.info):
            return {}
        calibration = self.infer.calibrator.ready
        return {
            "embedding_types": [kind.value for kind in EmbeddingType],
            "quantization": calibration.document() if calibration is not None else None,
            "input_types": dict(self.input_types),
        }
