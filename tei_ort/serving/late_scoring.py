"""Late-interaction scores in numpy: ColBERT's MaxSim and BGE-M3's hybrid score.

MaxSim(q, d) = sum over the query's vectors of the best dot product with any of the
document's vectors (stanford ColBERT, PyLate). BGE-M3 divides it by the query's vector
count (FlagEmbedding's ``colbert_score``) and mixes it with its dense and sparse scores:
``(w_dense * dense + w_sparse * sparse + w_colbert * colbert) / (w_dense + w_sparse +
w_colbert)`` (FlagEmbedding's ``compute_score`` "colbert+sparse+dense").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from tei_ort.serving.postprocess import Hybrid

F32 = NDArray[np.float32]

__all__ = ["hybrid_scores", "maxsim"]


def maxsim(query: F32, documents: Sequence[F32], *, mean: bool = False) -> F32:
    """(N,) MaxSim of one query (n, D) against each document (m_i, D); one matrix product
    for all documents. ``mean`` divides by n (BGE-M3)."""
    if not documents:
        return np.zeros(0, dtype=np.float32)
    sizes = np.asarray([d.shape[0] for d in documents])
    stacked = np.concatenate(documents, axis=0)  # (M, D)
    sims = query @ stacked.T  # (n, M)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    best = np.full((query.shape[0], len(documents)), -np.inf, dtype=np.float32)  # (n, N)
    nonempty = sizes > 0  # a document whose every token is skipped scores 0 per token
    if nonempty.any():
        best[:, nonempty] = np.maximum.reduceat(sims, starts[nonempty], axis=1)
    best[:, ~nonempty] = 0.0
    scores = best.sum(axis=0)  # (N,)
    if mean:
        scores = scores / max(query.shape[0], 1)
    out: F32 = scores.astype(np.float32, copy=False)
    return out


def hybrid_scores(
    query: Hybrid, documents: Sequence[Hybrid], weights: tuple[float, float, float]
) -> F32:
    """BGE-M3's weighted score (dense, sparse, colbert weights) of each document."""
    w_dense, w_sparse, w_colbert = weights
    dense = np.asarray([query.dense @ d.dense for d in documents], dtype=np.float32)
    (ids,) = np.nonzero(query.sparse)  # only the query's tokens can match
    sparse = np.asarray([query.sparse[ids] @ d.sparse[ids] for d in documents], np.float32)
    colbert = maxsim(query.multi, [d.multi for d in documents], mean=True)
    total = w_dense * dense + w_sparse * sparse + w_colbert * colbert
    out: F32 = (total / (w_dense + w_sparse + w_colbert)).astype(np.float32)
    return out
