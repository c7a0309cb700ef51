"""Gemma3 text encoders (model_type ``gemma3_text``): EmbeddingGemma and its kin.

The decoder of ``exporters.decoder`` with Gemma's changes: every RMSNorm scales by
(1 + w), q and k included; each block norms its attention and MLP outputs again before the
residual add (four norms a layer); token embeddings are scaled by sqrt(hidden); scores by
``query_pre_attn_scalar`` ** -0.5; the MLP is GeGLU (tanh GELU). Layers alternate between
sliding-window and global attention (``layer_types``, or every ``_sliding_window_pattern``-th
layer global), each type with its own RoPE base (transformers 5's per-type
``rope_parameters``, or ``rope_theta`` and ``rope_local_base_freq``).

With ``use_bidirectional_attention`` (EmbeddingGemma) every token attends in both
directions, sliding layers to keys within ``sliding_window // 2`` positions: transformers
halves the saved window (W // 2 + 1, an exclusive bound) and TEI reads |i - j| <= W // 2,
the same set. Without it the layers attend causally, like the other decoders.

Heads: embeddings only, as TEI serves Gemma3 (pooling and the 2_Dense / 3_Dense
projections of modules.json run after the graph).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tei_ort.engines.base import OutputName
from tei_ort.exporters import decoder, layers, rotary
from tei_ort.exporters.config_sizes import read_sizes
from tei_ort.exporters.decoder import LayerWeights
from tei_ort.exporters.decoder_config import FULL, SLIDING, DecoderConfig, rope_inv_freq
from tei_ort.exporters.errors import UnsupportedModelError
from tei_ort.exporters.export import ExportContext, GraphOutput
from tei_ort.exporters.graph import GraphBuilder
from tei_ort.exporters.head_kind import Head
from tei_ort.exporters.weights import WeightStore

F32 = NDArray[np.float32]

# *ForCausalLM checkpoints nest the text model under "model."
PREFIXES = ("model.",)
DEFAULT_THETA = {FULL: 1_000_000.0, SLIDING: 10_000.0}


@dataclass(frozen=True)
class Gemma3Config:
    base: DecoderConfig  # shapes, masks, scale; its inv_freq is the global layers'
    inv_freq: dict[str, F32]  # per layer type, (head_dim / 2,)
    embed_scale: float

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Gemma3Config:
        sizes = read_sizes(config)
        hidden, heads, n_layers = sizes.hidden, sizes.heads, sizes.layers
        intermediate, vocab = sizes.intermediate, sizes.vocab
        kv_heads = int(config.get("num_key_value_heads") or heads)
        head_dim = int(config.get("head_dim") or hidden // heads)
        if heads % kv_heads:
            raise UnsupportedModelError(
                f"{heads} attention heads are not a multiple of {kv_heads} key/value heads"
            )
        if config.get("attn_logit_softcapping") is not None:
            raise UnsupportedModelError("Gemma3 attn_logit_softcapping is not supported")
        bidirectional = bool(config.get("use_bidirectional_attention") or False)
        window = config.get("sliding_window")
        layer_types = _layer_types(config, n_layers)
        if SLIDING in layer_types and window is None:
            raise UnsupportedModelError("Gemma3 sliding layers without a sliding_window")
        inv_freq = {t: _inv_freq(config, t, head_dim) for t in (FULL, SLIDING)}
        bias = bool(config.get("attention_bias", False))
        base = DecoderConfig(
            hidden=hidden,
            heads=heads,
            kv_heads=kv_heads,
            head_dim=head_dim,
            layers=n_layers,
            intermediate=intermediate,
            eps=float(config.get("rms_norm_eps", 1e-6)),
            vocab=vocab,
            max_positions=int(config.get("max_position_embeddings", 131072)),
            act=layers.check_activation(
                str(
                    config.get("hidden_activation")
                    or config.get("hidden_act")
                    or "gelu_pytorch_tanh"
                )
            ),
            qkv_bias=bias,
            o_bias=bias,
            mlp_bias=False,
            qk_norm=True,
            layer_types=layer_types,
            sliding_window=None if window is None else int(window),
            inv_freq=inv_freq[FULL],
            causal=not bidirectional,
            query_scale=float(config.get("query_pre_attn_scalar", 256)) ** -0.5,
        )
        return cls(base, inv_freq, float(np.float32(math.sqrt(hidden))))


def _layer_types(config: dict[str, Any], n_layers: int) -> tuple[str, ...]:
    saved = config.get("layer_types")
    if isinstance(saved, list) and len(saved) == n_layers:
        unknown = sorted(set(saved) - {FULL, SLIDING})
        if unknown:
            raise UnsupportedModelError(f"layer_types {unknown} are not supported")
        return tuple(str(t) for t in saved)
    # transformers 4 configs: every pattern-th layer (counting from 1) is global
    pattern = int(
        config.get("_sliding_window_pattern") or config.get("sliding_window_pattern") or 6
    )
    return tuple(SLIDING if (i + 1) % pattern else FULL for i in range(n_layers))


def _inv_freq(config: dict[str, Any], layer_type: str, head_dim: int) -> F32:
    """One layer type's RoPE: transformers 5's rope_parameters[type], or the old keys
    (rope_theta and rope_scaling for global layers, rope_local_base_freq for local ones)."""
    params = config.get("rope_parameters")
    entry: dict[str, Any] | None = None
    if isinstance(params, dict):
        if not {FULL, SLIDING} & set(params):
            # one set of parameters for both layer types is not what Gemma3 reads
            raise UnsupportedModelError(
                "Gemma3 rope_parameters must have full_attention / sliding_attention entries"
            )
        nested = params.get(layer_type)
        entry = dict(nested) if isinstance(nested, dict) else None
    if entry is None:
        if layer_type == FULL:
            entry = dict(config.get("rope_scaling") or {})
            entry.setdefault("rope_theta", config.get("rope_theta") or DEFAULT_THETA[FULL])
        else:
            theta = config.get("rope_local_base_freq") or DEFAULT_THETA[SLIDING]
            entry = {"rope_type": "default", "rope_theta": theta}
    entry.setdefault("rope_theta", DEFAULT_THETA[layer_type])
    return rope_inv_freq({"rope_parameters": entry}, head_dim)


def _plus_one(w: F32) -> F32:
    """Gemma's RMSNorm scales by (1 + w), computed in float32 as transformers does."""
    return (np.float32(1.0) + w).astype(np.float32)


@dataclass
class Gemma3Layer:
    core: LayerWeights  # ln1: input norm, ln2: post-attention norm, all norms as (1 + w)
    pre_ff: F32  # (H,)
    post_ff: F32  # (H,)


def _take_layer(store: WeightStore, cfg: Gemma3Config, i: int) -> Gemma3Layer:
    core = decoder.take_layer(store, cfg.base, i)
    assert core.q_norm is not None and core.k_norm is not None
    core = replace(
        core,
        ln1=_plus_one(core.ln1),
        ln2=_plus_one(core.ln2),
        q_norm=_plus_one(core.q_norm),
        k_norm=_plus_one(core.k_norm),
    )
    h, p = cfg.base.hidden, f"layers.{i}."
    return Gemma3Layer(
        core=core,
        pre_ff=_plus_one(store.take(f"{p}pre_feedforward_layernorm.weight", (h,))),
        post_ff=_plus_one(store.take(f"{p}post_feedforward_layernorm.weight", (h,))),
    )


def _rope_tables(
    g: GraphBuilder, cfg: Gemma3Config, like: str, fused_rotary: bool
) -> dict[str, tuple[str, str, str, str]]:
    """Per layer type: (cos, sin) rows [0, T) (T, D), and (P, D / 2) halves for GQA."""
    tables: dict[str, tuple[str, str, str, str]] = {}
    half = cfg.base.head_dim // 2
    for layer_type in sorted(set(cfg.base.layer_types)):
        cos_np, sin_np = rotary.cos_sin_tables(cfg.inv_freq[layer_type], cfg.base.max_positions)
        name = f"rope.{layer_type}"
        cos, sin = rotary.prefix_tables(g, cos_np, sin_np, like, name)  # (T, D)
        cos_half = sin_half = ""
        if fused_rotary:
            cos_half = g.weight(f"{name}.cos_half", np.ascontiguousarray(cos_np[:, :half]))
            sin_half = g.weight(f"{name}.sin_half", np.ascontiguousarray(sin_np[:, :half]))
        tables[layer_type] = (cos, sin, cos_half, sin_half)
    return tables


def build_encoder(
    g: GraphBuilder,
    store: WeightStore,
    cfg: Gemma3Config,
    fused: bool,
    input_ids: str,
    attention_mask: str,
) -> str:
    """The final norm's output, (B, T, H)."""
    base, h = cfg.base, cfg.base.hidden
    word = store.take("embed_tokens.weight", (base.vocab, h))
    x = g.op("Gather", g.weight("embed_tokens", word), input_ids)  # (B, T, H)
    x = g.op("Mul", x, g.const(cfg.embed_scale, np.float32))
    fused_attention = decoder.fused_attention(base, fused)
    masks = decoder.masks_for(g, base, attention_mask, fused_attention)
    fused_rotary = fused_attention and base.head_dim % 16 == 0
    tables = _rope_tables(g, cfg, input_ids, fused_rotary)
    residual = x
    pending: str | None = None  # the last block's normed MLP output, not yet added
    for i in range(base.layers):
        w = _take_layer(store, cfg, i)
        name, layer_type = f"layer{i}", base.layer_types[i]
        if pending is None:
            normed = layers.rms_norm(g, residual, w.core.ln1, base.eps, f"{name}.ln1")
        else:
            normed, residual = decoder.skip_rms_norm(
                g, pending, residual, w.core.ln1, base.eps, f"{name}.ln1", fused
            )
        attn = decoder.attention(
            g, normed, w.core, base, layer_type, masks, tables[layer_type], name, fused
        )  # (B, T, N D)
        attn = g.op("MatMul", attn, g.weight(f"{name}.o_weight", w.core.w_o))  # (B, T, H)
        if w.core.b_o is not None:
            attn = g.op("Add", attn, g.weight(f"{name}.o_bias", w.core.b_o))
        attn = layers.rms_norm(g, attn, w.core.ln2, base.eps, f"{name}.post_attn")
        normed, residual = decoder.skip_rms_norm(
            g, attn, residual, w.pre_ff, base.eps, f"{name}.pre_ff", fused
        )
        mlp = decoder.mlp(g, normed, w.core, base, f"{name}.mlp")
        pending = layers.rms_norm(g, mlp, w.post_ff, base.eps, f"{name}.post_ff")
        del w
    final = _plus_one(store.take("norm.weight", (h,)))
    if pending is None:
        return layers.rms_norm(g, residual, final, base.eps, "norm")
    out, _ = decoder.skip_rms_norm(g, pending, residual, final, base.eps, "norm", fused)
    return out


def build(ctx: ExportContext) -> GraphOutput:
    """The graph for ``ctx.head`` on a gemma3_text checkpoint: hidden states only."""
    if ctx.head is not Head.BASE:
        raise UnsupportedModelError(
            f"the {ctx.head.value} head is not available for Gemma3 (embeddings only, as TEI)"
        )
    cfg = Gemma3Config.from_config(ctx.config)
    store = WeightStore(ctx.weight_files, strip_prefixes=PREFIXES)
    hidden = build_encoder(ctx.g, store, cfg, ctx.fused, ctx.input_ids, ctx.attention_mask)
    store.ignore("lm_head.")  # a *ForCausalLM checkpoint served as an embedder
    store.finish()
    return GraphOutput(hidden, OutputName.LAST_HIDDEN_STATE, ["batch", "sequence", cfg.base.hidden])
