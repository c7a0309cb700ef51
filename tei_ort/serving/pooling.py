"""Pooling and score functions in numpy, applied to engine outputs.

All functions work on whole batches and never loop in Python over tokens or floats.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from tei_ort.model.info import Pooling

F32 = NDArray[np.float32]


def pool(hidden: F32, attention_mask: NDArray[np.int64], pooling: Pooling) -> F32:
    """Pool token embeddings (B, T, H) into one vector per row (B, H).

    ``attention_mask`` (B, T) marks real tokens with 1; rows are right-padded, except for
    last-token pooling, which also accepts left padding (the last 1 in each row is used).
    """
    if pooling is Pooling.CLS:
        return np.ascontiguousarray(hidden[:, 0, :])
    if pooling is Pooling.MEAN:
        mask = attention_mask.astype(np.float32)[:, :, None]  # (B, T, 1)
        summed = np.einsum("bth,bt->bh", hidden, mask[:, :, 0], optimize=True)  # (B, H)
        counts = np.maximum(mask.sum(axis=1), 1e-9)  # (B, 1)
        mean: F32 = (summed / counts).astype(np.float32, copy=False)
        return mean
    if pooling is Pooling.LAST_TOKEN:
        seq_len = attention_mask.shape[1]
        # index of the last real token, whether the row is left- or right-padded
        last = seq_len - 1 - np.argmax(attention_mask[:, ::-1], axis=1)  # (B,)
        return np.ascontiguousarray(hidden[np.arange(hidden.shape[0]), last, :])
    raise ValueError(f"pooling {pooling.value!r} is computed inside the graph, not here")


def l2_normalize(vectors: F32) -> F32:
    """Scale each row (B, D) to unit length; zero rows stay zero."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)  # (B, 1)
    unit: F32 = (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
    return unit


def truncate_dimensions(vectors: F32, dimensions: int | None) -> F32:
    """Matryoshka: keep the first ``dimensions`` components (normalize afterwards)."""
    if dimensions is None or dimensions >= vectors.shape[-1]:
        return vectors
    return np.ascontiguousarray(vectors[..., :dimensions])


def softmax(logits: F32) -> F32:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    probs: F32 = (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32, copy=False)
    return probs


def sigmoid(logits: F32) -> F32:
    return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32, copy=False)


def classifier_scores(logits: F32, raw_scores: bool) -> F32:
    """TEI's /predict: softmax over several labels, sigmoid over one, unless raw."""
    if raw_scores:
        return logits
    return sigmoid(logits) if logits.shape[-1] == 1 else softmax(logits)
