"""Rotary position embeddings (RoPE), shared by every rotary architecture.

Tables are computed the way transformers computes them (float32 angles from float32
positions and inverse frequencies), because the rounding of the angles shows in the
outputs at the 1e-5 level. Builders compute ``inv_freq`` for their own scaling rule
(plain, NTK, YaRN, ...) and hand it here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tei_ort.exporters.graph import GraphBuilder

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


def ntk_inv_freq(head_dim: int, base: float, factor: float) -> F32:
    """Fixed NTK-aware scaling (Alibaba GTE "new"): base * factor, then / factor^(2/d).

    Rounded as the reference rounds it: float32 inverse frequencies divided by the
    float32 value of the Python scalar factor^(2/d).
    """
    inv = default_inv_freq(head_dim, base * factor)
    scaled: F32 = (inv / np.float32(factor ** (2.0 / head_dim))).astype(np.float32)
    return scaled


@dataclass(frozen=True)
class RotaryTables:
    """Rows [0, T) of the rotate-half cos/sin tables, (T, d) each, shared by all layers.

    There is one spelling: ONNX Runtime's com.microsoft.RotaryEmbedding measured no faster
    than these plain operators on CPU (GTE / NomicBert, base size, B x T = 8 x 128 and
    2 x 512: 3-9% slower), so the fused variant uses them too.
    """

    cos: str
    sin: str
    rotary_dim: int
    head_dim: int
    num_heads: int


def rotary_tables(
    g: GraphBuilder,
    inv_freq: F32,
    max_positions: int,
    num_heads: int,
    head_dim: int,
    like: str,
    name: str,
) -> RotaryTables:
    """Emit the tables once; ``like`` is any (B, T, ...) tensor of the batch."""
    cos, sin = cos_sin_tables(inv_freq, max_positions)
    cos_t, sin_t = prefix_tables(g, cos, sin, like, name)
    return RotaryTables(cos_t, sin_t, cos.shape[1], head_dim, num_heads)


def rotate(g: GraphBuilder, x: str, tables: RotaryTables) -> str:
    """Apply RoPE to every head of a projection ``x`` (B, T, N * D); returns (B, T, N * D)."""
    heads = g.op("Reshape", x, g.const([0, 0, tables.num_heads, tables.head_dim]))  # (B,T,N,D)
    rotated = apply_rotary(g, heads, tables.cos, tables.sin, tables.rotary_dim, tables.head_dim)
    return g.op("Reshape", rotated, g.const([0, 0, tables.num_heads * tables.head_dim]))
