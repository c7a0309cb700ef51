"""The in-process API: embed, classify and re-rank without a server.

::

    import tei_ort

    model = tei_ort.load()                         # all-MiniLM-L6-v2, offline
    vectors = model.embed(["a sentence", "another"])  # (2, 384) float32, L2-normalized
    ranked = reranker.rerank("query", ["doc a", "doc b"])  # [(index, score), ...] best first

Inputs are sorted by length and cut into batches under the same token budget the server
uses, so a long list pads little; results come back in input order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from engines.base import EngineInputs
from tei_ort.batching import pad_batch, plan_batch
from tei_ort.errors import EmptyError, ModelTypeError, ValidationError
from tei_ort.loading import LoadedModel, ModelOptions, load_model
from tei_ort.model_info import ModelInfo, ModelKind, Pooling
from tei_ort.pooling import (
    classifier_scores,
    l2_normalize,
    pool,
    truncate_dimensions,
)
from tei_ort.rerank_templates import encode_rerank_pairs
from tei_ort.tokenization import Encoded, TextInput, apply_prompt

F32 = NDArray[np.float32]
Direction = Literal["right", "left"]


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

    ``options`` are the fields of :class:`tei_ort.loading.ModelOptions`: ``revision``,
    ``hf_token``, ``huggingface_hub_cache``, ``pooling``, ``dense_path``, ``dtype``,
    ``engine_cache``, ``threads``.
    """
    loaded = load_model(
        ModelOptions(model_id=model_id, max_batch_tokens=max_batch_tokens, **options)  # type: ignore[arg-type]
    )
    return Model(loaded, max_batch_tokens=max_batch_tokens)


class Model:
    def __init__(self, loaded: LoadedModel, *, max_batch_tokens: int = 16384) -> None:
        self.loaded = loaded
        self.max_batch_tokens = max_batch_tokens

    @property
    def info(self) -> ModelInfo:
        return self.loaded.info

    @property
    def dimensions(self) -> int:
        """The length of the vectors ``embed`` returns (before ``dimensions`` cuts them)."""
        if self.info.pooling is Pooling.SPLADE:
            return int(self.info.config["vocab_size"])
        if self.loaded.dense is not None and self.loaded.dense.out_features is not None:
            return self.loaded.dense.out_features
        return self.info.hidden_size

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
    ) -> F32:
        """One pooled vector per input: (N, D)."""
        self._require_embedding("embed")
        is_splade = self.info.pooling is Pooling.SPLADE
        if is_splade and normalize:
            raise ModelTypeError("`normalize` is not available for SPLADE models")
        width = self.dimensions
        if dimensions is not None and not 0 < dimensions <= width:
            raise ValidationError(
                f"`dimensions` must be between 1 and the model's size {width}, not {dimensions}"
            )
        texts = self._texts(inputs, prompt_name)
        out = self._vectors(texts, width, truncate, truncation_direction)
        out = truncate_dimensions(out, dimensions)
        return l2_normalize(out) if normalize else out

    def embed_all(
        self,
        inputs: str | Sequence[str],
        *,
        truncate: bool = True,
        truncation_direction: Direction = "right",
        prompt_name: str | None = None,
    ) -> list[F32]:
        """Every token's embedding, one (T_i, H) array per input."""
        self._require_embedding("embed_all")
        if self.info.pooling is Pooling.SPLADE:
            raise ModelTypeError("`embed_all` is not available for SPLADE models")
        texts = self._texts(inputs, prompt_name)
        result: list[F32] = [np.empty(0, np.float32)] * len(texts)
        for rows, output, mask in self._run(self._encode(texts, truncate, truncation_direction)):
            lengths = mask.sum(axis=1)
            for k, row in enumerate(rows):
                result[row] = np.ascontiguousarray(output[k, : lengths[k]])
        return result

    def embed_sparse(
        self,
        inputs: str | Sequence[str],
        *,
        truncate: bool = True,
        truncation_direction: Direction = "right",
        prompt_name: str | None = None,
    ) -> list[SparseVector]:
        """The non-zero SPLADE weights of each input."""
        if self.info.pooling is not Pooling.SPLADE:
            raise ModelTypeError("model is not an embedding model with SPLADE pooling")
        texts = self._texts(inputs, prompt_name)
        result: list[SparseVector] = []
        for vector in self._vectors(texts, self.dimensions, truncate, truncation_direction):
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
        if self.info.kind is ModelKind.EMBEDDING:
            raise ModelTypeError("model is not a classifier model")
        batch = [inputs] if isinstance(inputs, str | tuple) else list(inputs)
        if not batch:
            raise EmptyError("`inputs` cannot be empty")
        logits = self._logits(batch, truncate, truncation_direction)
        return classifier_scores(logits, raw_scores)

    def labels(self) -> list[str]:
        return [self.info.id2label[i] for i in sorted(self.info.id2label)]

    def rerank(
        self,
        query: str,
        texts: Sequence[str],
        *,
        raw_scores: bool = False,
        truncate: bool = True,
        truncation_direction: Direction = "right",
        instruction: str | None = None,
    ) -> list[tuple[int, float]]:
        """(index, score) for each text, best first (ties keep input order).

        ``instruction`` is the task line of prompt-template re-rankers (Qwen3-Reranker);
        None keeps the model's default.
        """
        if self.info.kind is not ModelKind.RERANKER:
            raise ModelTypeError("model is not a re-ranker model")
        if not texts:
            raise EmptyError("`texts` cannot be empty")
        pairs = [(query, t) for t in texts]
        logits = self._logits(pairs, truncate, truncation_direction, instruction)
        scores = classifier_scores(logits, raw_scores)[:, 0]
        order = np.argsort(-scores, kind="stable")
        return [(int(i), float(scores[i])) for i in order]

    # -- internals ---------------------------------------------------------------------

    def _require_embedding(self, route: str) -> None:
        if self.info.kind is not ModelKind.EMBEDDING:
            raise ModelTypeError(
                f"`{route}` needs an embedding model, this is a {self.info.kind.value}"
            )

    def _pooling(self) -> Pooling:
        assert self.info.pooling is not None  # embedding models always have one
        return self.info.pooling

    def _texts(self, inputs: str | Sequence[str], prompt_name: str | None) -> list[str]:
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        if not texts:
            raise EmptyError("`inputs` cannot be empty")
        prompt_name = prompt_name or self.info.default_prompt_name
        if prompt_name is None:
            return texts
        if prompt_name not in self.info.prompts:
            raise ValidationError(
                f"Prompt name `{prompt_name}` was not found in the model's prompts"
            )
        prompt = self.info.prompts[prompt_name]
        return [apply_prompt(t, prompt) for t in texts]

    def _vectors(
        self, texts: Sequence[str], width: int, truncate: bool, direction: Direction
    ) -> F32:
        """Pooled (and Dense-projected) vectors, or SPLADE vectors, before normalizing."""
        out = np.empty((len(texts), width), dtype=np.float32)  # (N, D)
        for rows, output, mask in self._run(self._encode(texts, truncate, direction)):
            if self.info.pooling is Pooling.SPLADE:
                out[rows] = output  # pooled inside the graph
                continue
            vectors = pool(output, mask, self._pooling())
            out[rows] = self.loaded.dense(vectors) if self.loaded.dense is not None else vectors
        return out

    def _encode(
        self, inputs: Sequence[TextInput], truncate: bool, direction: Direction
    ) -> list[Encoded]:
        for item in inputs:
            if item == "" or (isinstance(item, tuple) and "" in item):
                raise EmptyError("`inputs` cannot contain an empty string")
        limit = self.info.max_input_length
        encoded = self.loaded.tokenizer.encode_batch(
            inputs, max_length=limit if truncate else None, direction=direction
        )
        for e in encoded:
            if len(e) > limit:
                raise ValidationError(
                    f"`inputs` must have less than {limit} tokens. Given: {len(e)}"
                )
        return encoded

    def _logits(
        self,
        inputs: Sequence[TextInput],
        truncate: bool,
        direction: Direction,
        instruction: str | None = None,
    ) -> F32:
        if self.info.rerank_template is not None:
            encoded = self._encode_template(inputs, truncate, direction, instruction)
        else:
            encoded = self._encode(inputs, truncate, direction)
        logits: F32 | None = None
        for rows, output, _ in self._run(encoded):
            if logits is None:
                logits = np.empty((len(encoded), output.shape[1]), dtype=np.float32)
            logits[rows] = output
        assert logits is not None
        return logits

    def _encode_template(
        self,
        inputs: Sequence[TextInput],
        truncate: bool,
        direction: Direction,
        instruction: str | None,
    ) -> list[Encoded]:
        """(query, document) pairs in the re-ranker's prompt template."""
        assert self.info.rerank_template is not None
        pairs: list[tuple[str, str]] = []
        for item in inputs:
            if not isinstance(item, tuple):
                raise ValidationError("this re-ranker scores (query, document) pairs, not texts")
            if "" in item:
                raise EmptyError("`inputs` cannot contain an empty string")
            pairs.append(item)
        limit = self.info.max_input_length
        encoded = encode_rerank_pairs(
            self.info.rerank_template,
            self.loaded.tokenizer,
            pairs,
            instruction=instruction,
            max_length=limit if truncate else None,
            direction=direction,
        )
        for e in encoded:
            if len(e) > limit:
                raise ValidationError(
                    f"`inputs` must have less than {limit} tokens. Given: {len(e)}"
                )
        return encoded

    def _run(
        self, encoded: Sequence[Encoded]
    ) -> Iterator[tuple[NDArray[np.intp], F32, NDArray[np.int64]]]:
        """Batches of inputs sorted by length: (input rows, engine output, attention mask)."""
        engine = self.loaded.engine
        order = np.argsort([len(e) for e in encoded], kind="stable")
        start = 0
        while start < len(order):
            count, padded = plan_batch(
                (len(encoded[i]) for i in order[start:]),
                max_batch_tokens=self.max_batch_tokens,
                cap=self.info.max_input_length,
            )
            rows = order[start : start + count]
            ids, mask, types = pad_batch(
                [encoded[i].input_ids for i in rows],
                padded,
                pad_id=self.loaded.tokenizer.pad_token_id,
                type_rows=[encoded[i].token_type_ids for i in rows],
            )
            yield rows, engine.run(EngineInputs(ids, mask, types)), mask
            start += count
