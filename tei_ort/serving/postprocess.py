"""From one batch's engine output to each entry's answer, in numpy.

Rows that want the same treatment are handled together (one pooling call for every pooled
row of the batch, one normalization per group): no Python loop over tokens or floats.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tei_ort.engines.base import OutputName
from tei_ort.model.info import Pooling
from tei_ort.model.late_heads import LateHeads
from tei_ort.serving.pooling import classifier_scores, l2_normalize, pool, truncate_dimensions

F32 = NDArray[np.float32]


class Mode(str, enum.Enum):
    POOLED = "pooled"  # one vector per input (/embed, /v1/embeddings, /similarity)
    TOKENS = "tokens"  # one vector per token (/embed_all)
    SPARSE = "sparse"  # the SPLADE vocabulary vector (/embed_sparse)
    SCORES = "scores"  # classifier / re-ranker scores (/predict, /rerank)
    # BGE-M3: dense, sparse and ColBERT outputs of one engine pass (``Hybrid``)
    HYBRID = "hybrid"


@dataclass(frozen=True)
class OutputSpec:
    """What a request wants from each of its rows."""

    mode: Mode
    normalize: bool = False
    dimensions: int | None = None
    raw_scores: bool = False
    query: bool = False  # late-interaction models: encode as a query, not a document


@dataclass(frozen=True)
class Hybrid:
    """Mode.HYBRID's answer for one input (BGE-M3's three heads)."""

    dense: F32  # (H,) pooled, normalized as the request asked
    sparse: F32  # (V,) lexical weights
    multi: F32  # (n, D) ColBERT vectors


#: what ``postprocess`` answers per row: an F32 array, or a Hybrid for Mode.HYBRID
Answer = Any


def postprocess(
    output: F32,
    attention_mask: NDArray[np.int64],
    lengths: Sequence[int],
    specs: Sequence[OutputSpec],
    *,
    output_name: OutputName,
    pooling: Pooling | None,
    dense: Callable[[F32], F32] | None = None,
    late: LateHeads | None = None,
    input_ids: NDArray[np.int64] | None = None,
) -> list[Answer]:
    """Answer every row of a batch.

    ``output`` is the engine output for the batch: (B, T, H) hidden states, (B, L) logits
    or (B, V) sparse vectors; ``lengths`` the real token count of each row. Returns one
    array per row: (D,) pooled, (T_i, H) token vectors, (V,) sparse, or (L,) scores.
    ``late`` (ColBERT, BGE-M3; with the batch's ``input_ids``) turns TOKENS into the model's
    late-interaction vectors, SPARSE into BGE-M3's lexical weights and answers HYBRID.
    """
    results: list[Answer] = [None] * len(specs)
    groups: dict[OutputSpec, list[int]] = defaultdict(list)
    for row, spec in enumerate(specs):
        groups[spec].append(row)

    for spec, rows in groups.items():
        index = np.asarray(rows, dtype=np.intp)
        if late is not None and spec.mode in (Mode.TOKENS, Mode.SPARSE, Mode.HYBRID):
            if input_ids is None:
                raise ValueError("late-interaction heads need the batch's input ids")
            _late_rows(output, input_ids, lengths, rows, spec, late, results, pooling, dense)
            continue
        if spec.mode is Mode.TOKENS:
            for row in rows:
                results[row] = np.ascontiguousarray(output[row, : lengths[row]])
            continue
        if spec.mode is Mode.SCORES:
            values = classifier_scores(output[index], spec.raw_scores)  # (b, L)
        elif spec.mode is Mode.SPARSE:
            values = output[index]  # (b, V)
        else:  # POOLED
            if output_name is OutputName.LAST_HIDDEN_STATE:
                if pooling is None:
                    raise ValueError("an embedding model needs a pooling")
                values = pool(output[index], attention_mask[index], pooling)  # (b, H)
                if dense is not None:
                    values = dense(values)
            else:  # a SPLADE graph already pools
                values = output[index]
            values = truncate_dimensions(values, spec.dimensions)
            if spec.normalize:
                values = l2_normalize(values)
        for position, row in enumerate(rows):
            results[row] = values[position]
    out: list[Answer] = []
    for row, result in enumerate(results):
        if result is None:  # pragma: no cover - every row belongs to one group
            raise AssertionError(f"row {row} was not post-processed")
        out.append(result)
    return out


def _late_rows(
    output: F32,
    input_ids: NDArray[np.int64],
    lengths: Sequence[int],
    rows: list[int],
    spec: OutputSpec,
    late: LateHeads,
    results: list[Answer],
    pooling: Pooling | None,
    dense: Callable[[F32], F32] | None,
) -> None:
    """The rows of one spec through the late-interaction heads (one row at a time: each
    has its own length and its own kept tokens)."""
    for row in rows:
        n = lengths[row]
        hidden, ids = output[row, :n], input_ids[row, :n]  # (T, H), (T,)
        if spec.mode is Mode.SPARSE:
            results[row] = late.lexical_weights(hidden, ids)
        elif spec.mode is Mode.TOKENS:
            results[row] = late.token_vectors(hidden, ids, query=spec.query)
        else:
            if pooling is None:
                raise ValueError("an embedding model needs a pooling")
            mask = np.ones((1, n), dtype=np.int64)
            pooled = pool(hidden[None], mask, pooling)  # (1, H)
            if dense is not None:
                pooled = dense(pooled)
            pooled = truncate_dimensions(pooled, spec.dimensions)
            if spec.normalize:
                pooled = l2_normalize(pooled)
            results[row] = Hybrid(
                dense=pooled[0],
                sparse=late.lexical_weights(hidden, ids),
                multi=late.token_vectors(hidden, ids, query=spec.query),
            )


def sparsify(vector: F32) -> list[dict[str, float | int]]:
    """/embed_sparse: the non-zero entries of a vocabulary vector, as TEI lists them."""
    (indices,) = np.nonzero(vector)
    values = vector[indices]
    return [
        {"index": i, "value": v} for i, v in zip(indices.tolist(), values.tolist(), strict=True)
    ]


def rank_order(scores: F32) -> list[int]:
    """Indices best first, as TEI orders them: a stable ascending sort, reversed, so tied
    scores come out with the later index first."""
    return list(np.argsort(scores, kind="stable")[::-1].tolist())
