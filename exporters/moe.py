"""Mixture-of-experts MLP layers with top-k routing (NomicBert MoE: nomic-embed-text-v2-moe).

Each token's router picks ``top_k`` of ``E`` experts by softmax probability; its output is
the sum of those experts' MLPs weighted by their (unrenormalised) probabilities, plus one
bias shared by all experts. Expert e is ``act(x @ w1[e].T) @ w2[e]``, with w1 and w2
stored stacked as (E * F, H).

The graph runs every expert on every token and zeroes the weights of the experts not
chosen: sum_e w_e act(x W1_e) W2_e = (w (x) act(x W1)) W2 over the stacked matrices, two
MatMuls whatever the routing, exact up to summation order. It costs E / top_k times the
routed work, which keeps the graph static (no per-expert gathers of data-dependent size).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tei_ort.exporters import layers
from tei_ort.exporters.errors import WeightMappingError
from tei_ort.exporters.graph import GraphBuilder
from tei_ort.exporters.weights import WeightStore

F32 = NDArray[np.float32]


@dataclass(frozen=True)
class MoeConfig:
    hidden: int
    ffn: int  # F, one expert's hidden width
    experts: int  # E
    top_k: int
    act: str


def expert_weights(g: GraphBuilder, x: str, router: F32, cfg: MoeConfig, name: str) -> str:
    """(B, T, H) -> (B, T, E): each chosen expert's router probability, 0 for the others."""
    logits = g.op("MatMul", x, g.weight(f"{name}.router_t", np.ascontiguousarray(router.T)))
    probs = g.op("Softmax", logits, axis=-1)  # (B, T, E)
    top, chosen = g.op_multi("TopK", probs, g.const([cfg.top_k]), axis=-1, outputs=2)
    zeros = g.op("Mul", probs, g.const(0.0, np.float32))  # (B, T, E), shaped as probs
    return g.op("ScatterElements", zeros, chosen, top, axis=-1)


def moe_mlp(
    g: GraphBuilder, store: WeightStore, x: str, cfg: MoeConfig, prefix: str, name: str
) -> str:
    """The MoE layer's output (B, T, H), bias included; tensors under ``prefix``:
    ``router.layer.weight`` (E, H), ``experts.mlp.w1`` / ``w2`` (E F, H), ``experts.bias``."""
    h, f, e = cfg.hidden, cfg.ffn, cfg.experts
    router = store.take(prefix + "router.layer.weight", (e, h))
    w1 = store.take(prefix + "experts.mlp.w1", (e * f, h))
    w2 = store.take(prefix + "experts.mlp.w2", (e * f, h))
    bias = store.take(prefix + "experts.bias", (h,))
    if cfg.top_k > e:
        raise WeightMappingError(f"moe_top_k {cfg.top_k} exceeds the {e} experts")
    weights = expert_weights(g, x, router, cfg, name)  # (B, T, E)
    up = g.op("MatMul", x, g.weight(f"{name}.w1_t", np.ascontiguousarray(w1.T)))  # (B, T, E F)
    up = layers.activation(g, up, None, cfg.act, f"{name}.act", fused=False)
    up = g.op("Reshape", up, g.const([0, 0, e, f]))  # (B, T, E, F)
    up = g.op("Mul", up, g.op("Unsqueeze", weights, g.const([3])))
    up = g.op("Reshape", up, g.const([0, 0, e * f]))  # (B, T, E F)
    out = g.op("MatMul", up, g.weight(f"{name}.w2", w2))  # (B, T, H)
    return g.op("Add", out, g.weight(f"{name}.bias", bias))
