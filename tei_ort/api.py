"""The in-process API: embed, classify and re-rank without a server.

::

    import tei_ort

    model = tei_ort.load()                              # all-MiniLM-L6-v2, offline
    vectors = model.embed(["a sentence", "another"])    # (2, 384) float32, L2-normalized
    codes = model.embed(["a sentence"], embedding_type="int8")  # (1, 384) int8, calibrated
    ranked = reranker.rerank("query", ["doc a", "doc b"])  # [(index, score), ...] best first

It validates and tokenizes with the server's ``InputEncoder`` and answers with the
server's ``postprocess``, so a call gives what the matching HTTP route gives. Inputs are
sorted by length and cut into batches under the token budget, so a long list pads
little; results come back in input order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from tei_ort.errors import EmptyError, ValidationError
from tei_ort.model.info import ModelInfo
from tei_ort.model.late_config import LateFormat
from tei_ort.model.loading import LoadedModel, ModelOptions, load_model
from tei_ort.model.tokenization import Direction, Encoded, TextInput
from tei_ort.serving import validation
from tei_ort.serving.batching import plan_batch
from tei_ort.serving.calibration import Calibrator
from tei_ort.serving.embedding_types import EmbeddingType, check_packable, encode, parse_type
from tei_ort.serving.encoding import InputEncoder, Item
from tei_ort.serving.executor import BatchExecutor
from tei_ort.serving.late_chunking import Chunked, Chunking, late_chunk_vectors, plan_document
from tei_ort.serving.late_scoring import hybrid_scores, maxsim
from tei_ort.serving.postprocess import Hybrid, Mode, OutputSpec, rank_order

F32 = NDArray[np.float32]
InputType = Literal["query", "document"]


@dataclass(frozen=True)
class SparseVector:
    """The non-zero entries of one SPLADE vector."""

    indices: NDArray[np.uint32]  # (K,)
    values: F32  # (K,)


def load(
    model_id: str | None = None,
    *,
    max_batch_tokens: int = 16384,
    **options: object,
) -> Model:
    """Load a model (hub id or local directory; None = all-MiniLM-L6-v2).

    ``options`` are the fields of :class:`tei_ort.model.loading.ModelOptions`: ``revision``,
    ``hf_token``, ``huggingface_hub_cache``, ``pooling``, ``dense_path``, ``dtype``,
    ``engine_cache``, ``threads``, ``provider``.
    """
    loaded = load_model(
        ModelOptions(model_id=model_id, max_batch_tokens=max_batch_tokens, **options)  # type: ignore[arg-type]
    )
    return Model(loaded, max_batch_tokens=max_batch_tokens)


class Model:
    def __init__(self, loaded: LoadedModel, *, max_batch_tokens: int = 16384) -> None:
        self.loaded = loaded
        self.max_batch_tokens = max_batch_tokens
        # as the server with --auto-truncate: inputs never exceed one batch
        max_input_length = min(loaded.info.max_input_length, max_batch_tokens)
        self.encoder = InputEncoder(
            loaded.info, loaded.tokenizer, max_input_length, late=loaded.late
        )
        self.executor = BatchExecutor(loaded, max_input_length)
        # int8 / uint8 ranges: from the engine cache entry, or computed on first use
        self.calibrator = Calibrator(loaded.info, self.executor, self.encoder, loaded.entry_dir)

    @property
    def info(self) -> ModelInfo:
        return self.loaded.info

    @property
    def dimensions(self) -> int | None:
        """The length of the vectors ``embed`` returns (before ``dimensions`` cuts them)."""
        return self.encoder.embedding_size

    def labels(self) -> list[str]:
        return [self.info.id2label[i] for i in sorted(self.info.id2label)]

    def close(self) -> None:
        self.loaded.engine.close()

    # -- public calls ------------------------------------------------------------------

    def embed(
        self,
        inputs: str | Sequence[str],
        *,
        normalize: bool = True,
        truncate: bool = True,
        truncation_direction: Direction = "right",
        prompt_name: str | None = None,
        dimensions: int | None = None,
        embedding_type: str = "float",
    ) -> NDArray[Any]:
        """One pooled vector per input: (N, D). SPLADE models need ``normalize=False``.

        ``embedding_type``: ``float`` (float32), ``int8`` / ``uint8`` (N, D) over the
        model's calibrated ranges, ``binary`` (int8) / ``ubinary`` (uint8) (N, D / 8),
        as the server's ``embedding_type`` (README "Typed embeddings").
        """
        kind = parse_type(embedding_type)
        spec = OutputSpec(Mode.POOLED, normalize=normalize, dimensions=dimensions)
        size = self.dimensions
        if size is not None:
            check_packable(size if dimensions is None else min(dimensions, size), kind)
        vectors = np.stack(self._embed(inputs, spec, truncate, truncation_direction, prompt_name))
        if kind is EmbeddingType.FLOAT:
            return vectors
        ranges = self.calibrator.get().ranges(dimensions, normalize) if kind.calibrated else None
        return encode(vectors, kind, ranges)  # (N, D) or (N, D / 8)

    def embed_all(
        self,
        inputs: str | Sequence[str],
        *,
        truncate: bool = True,
        truncation_direction: Direction = "right",
        prompt_name: str | None = None,
        input_type: InputType = "document",
    ) -> list[F32]:
        """Every token's embedding, one (T_i, H) array per input; for a ColBERT or BGE-M3
        model its late-interaction vectors (n_i, D), encoded as ``input_type`` says."""
        spec = OutputSpec(Mode.TOKENS, query=input_type == "query")
        return self._embed(inputs, spec, truncate, truncation_direction, prompt_name)

    def embed_hybrid(
        self,
        inputs: str | Sequence[str],
        *,
        normalize: bool = True,
        truncate: bool = True,
        truncation_direction: Direction = "right",
        input_type: InputType = "document",
    ) -> list[Hybrid]:
        """BGE-M3: dense, sparse (V,) and ColBERT vectors of each input, one engine pass."""
        spec = OutputSpec(Mode.HYBRID, normalize=normalize, query=input_type == "query")
        return self._embed(inputs, spec, truncate, truncation_direction, None)

    def embed_chunks(
        self,
        inputs: str | Sequence[str],
        *,
        spans: Sequence[Sequence[tuple[int, int]]] | None = None,
        size: int | None = None,
        overlap: int = 0,
        late: bool = True,
        normalize: bool = True,
        dimensions: int | None = None,
        prompt_name: str | None = None,
    ) -> list[Chunked]:
        """Late chunking: one vector per chunk of each input, pooled (by the model's rule)
        from the token states of the whole input, run as overlapping windows past the
        model's length. Chunks are ``spans`` (per input, [start, end) characters) or
        ``size`` tokens every ``size - overlap``; ``late=False`` embeds each chunk alone."""
        if (spans is None) == (size is None):
            raise ValidationError("Input validation error: give either `spans` or `size`")
        chunking = Chunking(
            spans=None if spans is None else [list(s) for s in spans],
            size=size,
            overlap=overlap,
            late=late,
        )
        items: list[Item] = [inputs] if isinstance(inputs, str) else list(inputs)
        if not items:
            raise EmptyError("Input validation error: `inputs` cannot be empty")
        spec = OutputSpec(Mode.POOLED, normalize=normalize, dimensions=dimensions)
        self.encoder.check_embed(spec)
        texts = validation.check_chunked_inputs(self.info, items, chunking)
        prompt = self.encoder.prompt(prompt_name)
        window = self.executor.max_input_length
        documents = [
            plan_document(self.loaded.tokenizer, text, i, chunking, prompt, window)
            for i, text in enumerate(texts)
        ]
        if not late:
            pieces = [
                text[a:b] for text, d in zip(texts, documents, strict=True) for a, b in d.plan.spans
            ]
            flat = self.embed(
                pieces, normalize=normalize, dimensions=dimensions, prompt_name=prompt_name
            )
            out, at = [], 0
            for document in documents:
                count = len(document.plan.spans)
                out.append(Chunked(document.plan.spans, flat[at : at + count]))
                at += count
            return out
        rows = [
            Encoded(np.asarray(ids, np.int64), np.zeros(len(ids), np.int64))
            for d in documents
            for ids in d.window_ids
        ]
        states = self.answer_encoded(rows, OutputSpec(Mode.TOKENS))
        assert self.info.pooling is not None
        return late_chunk_vectors(
            documents,
            states,
            self.info.pooling,
            window,
            dense=self.loaded.dense,
            normalize=normalize,
            dimensions=dimensions,
        )

    def embed_sparse(
        self,
        inputs: str | Sequence[str],
        *,
        truncate: bool = True,
        truncation_direction: Direction = "right",
        prompt_name: str | None = None,
    ) -> list[SparseVector]:
        """The non-zero SPLADE weights of each input."""
        spec = OutputSpec(Mode.SPARSE)
        result = []
        for vector in self._embed(inputs, spec, truncate, truncation_direction, prompt_name):
            (indices,) = np.nonzero(vector)
            result.append(SparseVector(indices.astype(np.uint32), vector[indices]))
        return result

    def predict(
        self,
        inputs: TextInput | Sequence[TextInput],
        *,
        raw_scores: bool = False,
        truncate: bool = True,
        truncation_direction: Direction = "right",
    ) -> F32:
        """Classifier scores (N, labels): softmax, or sigmoid for one label, unless raw."""
        self.encoder.check_predict()
        batch: list[Item] = [inputs] if isinstance(inputs, str | tuple) else list(inputs)
        spec = OutputSpec(Mode.SCORES, raw_scores=raw_scores)
        return np.stack(self._answer(batch, spec, truncate, truncation_direction, None))

    def rerank(
        self,
        query: str,
        texts: Sequence[str],
        *,
        raw_scores: bool = False,
        truncate: bool = True,
        truncation_direction: Direction = "right",
        instruction: str | None = None,
        hybrid_weights: tuple[float, float, float] | None = None,
    ) -> list[tuple[int, float]]:
        """(index, score) for each text, best first, ties ordered as TEI orders them.

        ``instruction`` is the task line of prompt-template re-rankers (Qwen3-Reranker);
        None keeps the model's default. A ColBERT or BGE-M3 model scores by MaxSim, or
        (BGE-M3) by ``hybrid_weights`` (dense, sparse, colbert) as the server does.
        """
        late = self.info.late_interaction
        if late is None:
            validation.check_rerank_route(self.info)
        if not texts:
            raise EmptyError("`texts` cannot be empty")
        if late is not None:
            return self._late_rerank(query, texts, truncate, truncation_direction, hybrid_weights)
        pairs: list[Item] = [(query, text) for text in texts]
        spec = OutputSpec(Mode.SCORES, raw_scores=raw_scores)
        answers = self._answer(pairs, spec, truncate, truncation_direction, None, instruction)
        scores = np.asarray([a[0] for a in answers], dtype=np.float32)  # (N,)
        return [(i, float(scores[i])) for i in rank_order(scores)]

    # -- internals ---------------------------------------------------------------------

    def _late_rerank(
        self,
        query: str,
        texts: Sequence[str],
        truncate: bool,
        direction: Direction,
        weights: tuple[float, float, float] | None,
    ) -> list[tuple[int, float]]:
        late = self.info.late_interaction
        assert late is not None
        if weights is not None and late.format is not LateFormat.BGE_M3:
            raise ValidationError("Input validation error: `hybrid_weights` needs a BGE-M3 model")
        mode = Mode.TOKENS if weights is None else Mode.HYBRID
        (queried,) = self._embed(
            [query], OutputSpec(mode, normalize=True, query=True), truncate, direction, None
        )
        documents = self._embed(
            list(texts), OutputSpec(mode, normalize=True), truncate, direction, None
        )
        if weights is None:
            scores = maxsim(queried, documents, mean=late.scores_by_query_length)
        else:
            scores = hybrid_scores(queried, documents, weights)
        return [(i, float(scores[i])) for i in rank_order(scores)]

    def _embed(
        self,
        inputs: str | Sequence[str],
        spec: OutputSpec,
        truncate: bool,
        direction: Direction,
        prompt_name: str | None,
    ) -> list[Any]:
        self.encoder.check_embed(spec)
        items: list[Item] = [inputs] if isinstance(inputs, str) else list(inputs)
        prompt = self.encoder.prompt(prompt_name)
        self.encoder.check_late(spec)
        return self._answer(items, spec, truncate, direction, prompt)

    def _answer(
        self,
        items: Sequence[Item],
        spec: OutputSpec,
        truncate: bool,
        direction: Direction,
        prompt: str | None,
        instruction: str | None = None,
    ) -> list[F32]:
        if not items:
            raise EmptyError("Input validation error: `inputs` cannot be empty")
        encoded = self.encoder.encode(
            items, truncate, direction, prompt, instruction, query=spec.query
        )
        return self.answer_encoded(encoded, spec)

    def answer_encoded(self, encoded: Sequence[Encoded], spec: OutputSpec) -> list[F32]:
        """The answers for inputs already encoded by ``self.encoder``, in input order.

        For callers that need the token counts too (``tei-ort embed-corpus``): encode with
        ``self.encoder.encode``, then run the batches here.
        """
        answers: list[F32 | None] = [None] * len(encoded)
        for rows in self._batches(encoded):
            inputs = self.executor.inputs([encoded[i] for i in rows])
            output = self.executor.run(inputs)
            lengths = [len(encoded[i]) for i in rows]
            results = self.executor.answers(output, inputs, lengths, [spec] * len(rows))
            for row, result in zip(rows, results, strict=True):
                answers[row] = result
        return [a for a in answers if a is not None]

    def _batches(self, encoded: Sequence[Encoded]) -> Iterator[list[int]]:
        """The inputs' rows sorted by length, cut into batches under the token budget."""
        order = [int(i) for i in np.argsort([len(e) for e in encoded], kind="stable")]
        start = 0
        while start < len(order):
            count, _ = plan_batch(
                (len(encoded[i]) for i in order[start:]),
                max_batch_tokens=self.max_batch_tokens,
                multiple=self.executor.pad_multiple,
                cap=self.executor.max_input_length,
            )
            yield order[start : start + count]
            start += count
