"""What a decoder's config.json says, read once: sizes, switches, attention layout, RoPE.

Reads transformers-4 keys (``rope_theta``, ``rope_scaling``, ``sliding_window`` /
``use_sliding_window``) and transformers-5 ones (``rope_parameters``, ``layer_types``), and
refuses by name what the exporter cannot reproduce exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tei_ort.exporters import layers, rotary
from tei_ort.exporters.config_sizes import read_sizes
from tei_ort.exporters.errors import UnsupportedModelError

F32 = NDArray[np.float32]

FULL = "full_attention"
SLIDING = "sliding_attention"
# RoPE variants whose tables we can compute exactly as transformers does
SUPPORTED_ROPE = ("default", "linear", "llama3", "dynamic")


@dataclass(frozen=True)
class DecoderConfig:
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    layers: int
    intermediate: int
    eps: float
    vocab: int
    max_positions: int
    act: str
    qkv_bias: bool
    o_bias: bool
    mlp_bias: bool
    qk_norm: bool
    layer_types: tuple[str, ...]
    sliding_window: int | None
    inv_freq: F32  # (rotary_dim / 2,)
    causal: bool = True
    # softmax(q k^T * scale); None: 1 / sqrt(head_dim)
    query_scale: float | None = None

    @property
    def rotary_dim(self) -> int:
        return 2 * int(self.inv_freq.shape[0])

    @property
    def scale(self) -> float:
        return 1.0 / math.sqrt(self.head_dim) if self.query_scale is None else self.query_scale

    @classmethod
    def from_config(cls, config: dict[str, Any], model_type: str) -> DecoderConfig:
        sizes = read_sizes(config)
        hidden, heads, n_layers = sizes.hidden, sizes.heads, sizes.layers
        intermediate, vocab = sizes.intermediate, sizes.vocab
        kv_heads = int(config.get("num_key_value_heads") or heads)
        head_dim = int(config.get("head_dim") or hidden // heads)
        if "max_position_embeddings" not in config:
            raise UnsupportedModelError("config.json lacks 'max_position_embeddings'")
        max_positions = int(config["max_position_embeddings"])
        if heads % kv_heads:
            raise UnsupportedModelError(
                f"{heads} attention heads are not a multiple of {kv_heads} key/value heads"
            )
        attention_bias = bool(config.get("attention_bias", False))
        qkv_bias = {"qwen2": True, "mistral": False}.get(model_type, attention_bias)
        o_bias = False if model_type in ("qwen2", "mistral") else attention_bias
        layer_types, window = _layer_types(config, model_type, n_layers)
        bidirectional = bool(config.get("use_bidirectional_attention") or False)
        if bidirectional and model_type != "qwen3":
            # TEI reads the switch for Qwen3 only; serving another family causally would
            # give vectors its authors never trained
            raise UnsupportedModelError(
                f"use_bidirectional_attention is not supported for {model_type} models"
            )
        if bidirectional and window is not None:
            raise UnsupportedModelError("bidirectional attention with a sliding window")
        return cls(
            hidden=hidden,
            heads=heads,
            kv_heads=kv_heads,
            head_dim=head_dim,
            layers=n_layers,
            intermediate=intermediate,
            eps=float(config.get("rms_norm_eps", 1e-6)),
            vocab=vocab,
            max_positions=max_positions,
            act=layers.check_activation(str(config.get("hidden_act", "silu"))),
            qkv_bias=qkv_bias,
            o_bias=o_bias,
            mlp_bias=model_type == "llama" and bool(config.get("mlp_bias", False)),
            qk_norm=model_type == "qwen3",
            layer_types=layer_types,
            sliding_window=window,
            inv_freq=rope_inv_freq(config, head_dim),
            causal=not bidirectional,
        )


def _layer_types(
    config: dict[str, Any], model_type: str, n_layers: int
) -> tuple[tuple[str, ...], int | None]:
    """Which layers attend through a sliding window, and its size (as transformers reads it)."""
    window = config.get("sliding_window")
    if model_type in ("qwen2", "qwen3") and not config.get("use_sliding_window", False):
        window = None
    if model_type == "llama":
        window = None
    if window is None:
        return (FULL,) * n_layers, None
    saved = config.get("layer_types")
    if isinstance(saved, list) and len(saved) == n_layers:
        unknown = sorted(set(saved) - {FULL, SLIDING})
        if unknown:
            raise UnsupportedModelError(f"layer_types {unknown} are not supported")
        return tuple(str(t) for t in saved), int(window)
    if model_type == "mistral":
        return (SLIDING,) * n_layers, int(window)
    # Qwen: layers from max_window_layers on use the window
    first = int(config.get("max_window_layers", n_layers))
    return tuple(SLIDING if i >= first else FULL for i in range(n_layers)), int(window)


def rope_inv_freq(config: dict[str, Any], head_dim: int) -> F32:
    """Inverse frequencies for the config's RoPE, computed as transformers computes them.

    Reads transformers 5's ``rope_parameters`` and the older ``rope_theta`` +
    ``rope_scaling``. "dynamic" NTK equals the default below ``max_position_embeddings``,
    which is as far as the exported tables reach.
    """
    params = config.get("rope_parameters")
    if not isinstance(params, dict):
        params = dict(config.get("rope_scaling") or {})
    theta = float(params.get("rope_theta", config.get("rope_theta", 10000.0)))
    rope_type = str(params.get("rope_type", params.get("type", "default")))
    partial = float(params.get("partial_rotary_factor", config.get("partial_rotary_factor", 1.0)))
    if rope_type not in SUPPORTED_ROPE:
        raise UnsupportedModelError(
            f"rope type {rope_type!r} is not supported (supported: {', '.join(SUPPORTED_ROPE)})"
        )
    if partial != 1.0:
        # these families rotate whole heads; transformers reads the factor inconsistently
        raise UnsupportedModelError(f"partial_rotary_factor {partial} is not supported")
    inv = rotary.default_inv_freq(head_dim, theta)
    if rope_type == "linear":
        inv = (inv / np.float32(params["factor"])).astype(np.float32)
    elif rope_type == "llama3":
        inv = _llama3_inv_freq(inv, params)
    return inv


def _llama3_inv_freq(inv: F32, params: dict[str, Any]) -> F32:
    # float32 throughout, step by step as transformers' _compute_llama3_parameters
    factor = float(params["factor"])
    low, high = float(params["low_freq_factor"]), float(params["high_freq_factor"])
    old_len = float(params["original_max_position_embeddings"])
    low_wavelen, high_wavelen = old_len / low, old_len / high
    wavelen = (np.float32(2 * math.pi) / inv).astype(np.float32)
    scaled = np.where(wavelen > low_wavelen, inv / np.float32(factor), inv).astype(np.float32)
    smooth = ((np.float32(old_len) / wavelen - np.float32(low)) / np.float32(high - low)).astype(
        np.float32
    )
    smoothed = ((np.float32(1) - smooth) * scaled / np.float32(factor) + smooth * scaled).astype(
        np.float32
    )
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return np.where(medium, smoothed, scaled).astype(np.float32)


# --- weights --------------------------------------------------------------------------------
