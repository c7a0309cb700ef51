"""Rotary position embeddings (RoPE), shared by every rotary architecture.

Tables are computed the way transformers computes them (float32 angles from float32
positions and inverse frequencies), because the rounding of the angles shows in the
outputs at the 1e-5 level. Builders compute ``inv_freq`` for their own scaling rule
(plain, NTK, YaRN, ...) and hand it here.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from exporters.graph import GraphBuilder

F32 = NDArray[np.float32]


def default_inv_freq(head_dim: int, base: float, rotary_dim: int | None = None) -> F32:
    """1 / base^(2j / d) for j < d / 2, in float32 (d = the rotated part of the head)."""
    dim = rotary_dim or head_dim
    exponents = np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / np.float32(dim)
    inv: F32 = (1.0 / (np.float32(base) ** exponents)).astype(np.float32)
    return inv


def cos_sin_tables(inv_freq: F32, max_positions: int) -> tuple[F32, F32]:
    """cos and sin tables (P, d) in the rotate-half layout: [freqs | freqs]."""
    positions = np.arange(max_positions, dtype=np.float32)  # (P,)
    freqs = np.outer(positions, inv_freq).astype(np.float32)  # (P, d/2)
    angles = np.concatenate([freqs, freqs], axis=-1)  # (P, d)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def prefix_tables(g: GraphBuilder, cos: F32, sin: F32, like: str, name: str) -> tuple[str, str]:
    """Rows [0, T) of the tables, T taken from dim 1 of ``like`` (B, T, ...): (T, d) each."""
    seq_len = g.op("Gather", g.op("Shape", like), g.const([1]))  # (1,)
    starts, axes = g.const([0]), g.const([0])
    cos_t = g.op("Slice", g.weight(f"{name}.cos", cos), starts, seq_len, axes)
    sin_t = g.op("Slice", g.weight(f"{name}.sin", sin), starts, seq_len, axes)
    return cos_t, sin_t


def apply_rotary(
    g: GraphBuilder, x: str, cos: str, sin: str, rotary_dim: int, head_dim: int
) -> str:
    """Rotate the first ``rotary_dim`` features of every head of ``x`` (B, T, N, D).

    ``cos``/``sin`` are (T, rotary_dim), broadcast over batch and heads. Rotate-half
    (GPT-NeoX) layout: features j and j + rotary_dim/2 form a pair.
    """
    cos4 = g.op("Unsqueeze", cos, g.const([1]))  # (T, 1, d)
    sin4 = g.op("Unsqueeze", sin, g.const([1]))
    half = rotary_dim // 2
    if rotary_dim < head_dim:
        rot, rest = g.op_multi(
            "Split", x, g.const([rotary_dim, head_dim - rotary_dim]), axis=-1, outputs=2
        )
    else:
        rot, rest = x, ""
    x1, x2 = g.op_multi("Split", rot, g.const([half, half]), axis=-1, outputs=2)
    rotated = g.op("Concat", g.op("Neg", x2), x1, axis=-1)  # rotate_half(x)
    out = g.op("Add", g.op("Mul", rot, cos4), g.op("Mul", rotated, sin4))
    return g.op("Concat", out, rest, axis=-1) if rest else out
