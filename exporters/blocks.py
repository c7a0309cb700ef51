"""Checkpoint-aware blocks: take a layer's tensors from the WeightStore and emit them.

``layers`` works on arrays; these functions also know how checkpoints lay the tensors
out (``<prefix>.weight`` / ``<prefix>.bias``), so every encoder builder spells its layers
as the names of its tensors and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from tei_ort.exporters import layers
from tei_ort.exporters.graph import INT64, GraphBuilder
from tei_ort.exporters.weights import WeightStore

F32 = NDArray[np.float32]


def packed_qkv(store: WeightStore, projections: Sequence[str], hidden: int) -> tuple[F32, F32]:
    """Separate q, k, v Linear layers as one (H, 3H) weight [q | k | v] and its (3H,) bias."""
    weights = [store.take(p + ".weight", (hidden, hidden)) for p in projections]
    biases = [store.take(p + ".bias", (hidden,)) for p in projections]
    return np.concatenate([w.T for w in weights], axis=1), np.concatenate(biases)


def project_add_norm(
    g: GraphBuilder,
    store: WeightStore,
    y: str,
    residual: str,
    *,
    projection: str,
    norm: str,
    in_features: int,
    hidden: int,
    eps: float,
    name: str,
    fused: bool,
    bias_optional: bool = False,
) -> str:
    """LayerNorm(residual + y @ W.T + b): a post-LN block's output projection and residual.

    The projection's bias is handed to the norm, which adds it with the residual in one
    pass. Tensors: ``{projection}.weight`` (hidden, in_features), ``{projection}.bias``,
    ``{norm}.weight``, ``{norm}.bias``.
    """
    weight = store.take(projection + ".weight", (hidden, in_features))
    bias_name = projection + ".bias"
    bias = (
        store.take_optional(bias_name, (hidden,))
        if bias_optional
        else store.take(bias_name, (hidden,))
    )
    projected = layers.linear(g, y, weight, None, name)
    return layers.skip_layer_norm(
        g,
        projected,
        residual,
        bias,
        store.take(norm + ".weight", (hidden,)),
        store.take(norm + ".bias", (hidden,)),
        eps,
        name + ".ln",
        fused,
    )


def add_token_types(
    g: GraphBuilder, store: WeightStore, x: str, type_vocab: int, hidden: int
) -> str:
    """x + the token-type embedding of each token (B, T, H).

    Only a model with two or more types reads ``token_type_ids`` (a graph input then);
    with one type every token adds the same row, a constant; with none, nothing.
    """
    if type_vocab >= 2:
        types = store.take("embeddings.token_type_embeddings.weight", (type_vocab, hidden))
        token_type_ids = g.input("token_type_ids", INT64, ["batch", "sequence"])
        table = g.weight("embeddings.token_type", types)
        return g.op("Add", x, g.op("Gather", table, token_type_ids))
    if type_vocab == 1:
        row = store.take("embeddings.token_type_embeddings.weight", (1, hidden))[0]
        return g.op("Add", x, g.weight("embeddings.token_type_row", row))
    return x
