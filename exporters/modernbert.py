"""ModernBERT encoders and their sequence classifiers (e.g. gte-reranker-modernbert-base).

A pre-LayerNorm encoder with rotary positions, a GeGLU MLP and no biases by default
(``attention_bias``, ``mlp_bias``, ``norm_bias``, ``classifier_bias``). Every
``global_attn_every_n_layers``-th layer attends globally with ``global_rope_theta``; the
others attend to a local window (``local_attention`` tokens in all, half on each side) with
``local_rope_theta``. The first layer has no attention norm; a final norm closes the stack.

transformers unpads the batch only when flash-attn is installed; with eager or SDPA
attention it masks padded keys as we do, so the outputs match on every real token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tei_ort.engines.base import OutputName
from tei_ort.exporters import layers, rotary
from tei_ort.exporters.config_sizes import read_sizes
from tei_ort.exporters.errors import UnsupportedModelError, WeightMappingError
from tei_ort.exporters.export import ExportContext, GraphOutput
from tei_ort.exporters.graph import MS_DOMAIN, GraphBuilder
from tei_ort.exporters.head_kind import Head
from tei_ort.exporters.weights import WeightStore

F32 = NDArray[np.float32]

FULL = "full_attention"
SLIDING = "sliding_attention"
PREFIXES = ("model.",)  # *For* checkpoints nest the encoder under "model."


@dataclass(frozen=True)
class ModernBertConfig:
    hidden: int
    heads: int
    layers: int
    intermediate: int
    act: str
    eps: float
    vocab: int
    max_positions: int
    half_window: int  # a local layer's query sees keys at distance <= half_window
    layer_types: tuple[str, ...]
    theta: dict[str, float]  # per layer type
    attention_bias: bool
    mlp_bias: bool
    norm_bias: bool
    classifier_bias: bool
    classifier_act: str
    classifier_pooling: str

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModernBertConfig:
        sizes = read_sizes(config)
        hidden, heads, n_layers = sizes.hidden, sizes.heads, sizes.layers
        intermediate, vocab = sizes.intermediate, sizes.vocab
        if hidden % heads:
            raise UnsupportedModelError(f"hidden size {hidden} is not divisible by {heads} heads")
        every = int(config.get("global_attn_every_n_layers", 3))
        saved = config.get("layer_types")
        if isinstance(saved, list) and len(saved) == n_layers:
            layer_types = tuple(str(t) for t in saved)
            unknown = sorted(set(layer_types) - {FULL, SLIDING})
            if unknown:
                raise UnsupportedModelError(f"layer_types {unknown} are not supported")
        else:
            layer_types = tuple(SLIDING if i % every else FULL for i in range(n_layers))
        pooling = str(config.get("classifier_pooling", "cls"))
        if pooling not in ("cls", "mean"):
            raise UnsupportedModelError(f"classifier_pooling {pooling!r} is not supported")
        return cls(
            hidden=hidden,
            heads=heads,
            layers=n_layers,
            intermediate=intermediate,
            act=layers.check_activation(str(config.get("hidden_activation", "gelu"))),
            eps=float(config.get("norm_eps", 1e-5)),
            vocab=vocab,
            max_positions=int(config.get("max_position_embeddings", 8192)),
            half_window=int(config.get("local_attention", 128)) // 2,
            layer_types=layer_types,
            theta=_rope_thetas(config),
            attention_bias=bool(config.get("attention_bias", False)),
            mlp_bias=bool(config.get("mlp_bias", False)),
            norm_bias=bool(config.get("norm_bias", False)),
            classifier_bias=bool(config.get("classifier_bias", False)),
            classifier_act=layers.check_activation(
                str(config.get("classifier_activation", "gelu"))
            ),
            classifier_pooling=pooling,
        )


def _rope_thetas(config: dict[str, Any]) -> dict[str, float]:
    """RoPE base per layer type: transformers 5's rope_parameters or the original keys."""
    thetas = {
        FULL: float(config.get("global_rope_theta", 160000.0)),
        SLIDING: float(config.get("local_rope_theta", 10000.0)),
    }
    params = config.get("rope_parameters")
    if isinstance(params, dict):
        for layer_type in (FULL, SLIDING):
            entry = params.get(layer_type)
            if not isinstance(entry, dict):
                continue
            rope_type = str(entry.get("rope_type", "default"))
            if rope_type != "default":
                raise UnsupportedModelError(f"ModernBERT rope type {rope_type!r} is not supported")
            thetas[layer_type] = float(entry.get("rope_theta", thetas[layer_type]))
    if config.get("rope_scaling"):
        raise UnsupportedModelError("ModernBERT with rope_scaling is not supported")
    return thetas


# --- graph pieces ----------------------------------------------------------------------------


def _norm(store: WeightStore, prefix: str, cfg: ModernBertConfig) -> tuple[F32, F32]:
    """A LayerNorm's gamma and beta; without ``norm_bias`` beta is zero (exactly no bias)."""
    gamma = store.take(prefix + ".weight", (cfg.hidden,))
    beta = (
        store.take(prefix + ".bias", (cfg.hidden,))
        if cfg.norm_bias
        else np.zeros(cfg.hidden, np.float32)
    )
    return gamma, beta


def skip_layer_norm(
    g: GraphBuilder,
    x: str,
    skip: str,
    gamma: F32,
    beta: F32,
    eps: float,
    name: str,
    fused: bool,
) -> tuple[str, str]:
    """(LayerNorm(x + skip), x + skip): the residual step of a pre-norm block."""
    if fused:
        outs = g.op_multi(
            "SkipLayerNormalization",
            x,
            skip,
            g.weight(f"{name}.weight", gamma),
            g.weight(f"{name}.bias", beta),
            domain=MS_DOMAIN,
            outputs=4,
            epsilon=float(eps),
        )
        return outs[0], outs[3]
    total = g.op("Add", x, skip)
    return layers.layer_norm(g, total, gamma, beta, eps, name), total


@dataclass(frozen=True)
class Masks:
    key_mask: str  # (B, T) int32, for fused global layers
    bias: dict[str, str]  # additive (B, 1, 1|T, T) per layer type


def _masks(g: GraphBuilder, cfg: ModernBertConfig, attention_mask: str) -> Masks:
    key_bias = layers.additive_mask(g, attention_mask)  # (B, 1, 1, T)
    bias = {FULL: key_bias}
    if SLIDING in cfg.layer_types:
        distance = layers.token_distance(g, attention_mask)  # (T, T)
        outside = g.op("Greater", distance, g.const(cfg.half_window))
        window = g.op(
            "Where", outside, g.const(layers.MASK_FILL, np.float32), g.const(0.0, np.float32)
        )  # (T, T)
        # a key both outside the window and padded gets the fill once, like a single mask
        local = g.op("Add", key_bias, window)
        bias[SLIDING] = g.op("Max", local, g.const(layers.MASK_FILL, np.float32))  # (B,1,T,T)
    return Masks(g.op("Cast", attention_mask, to=6), bias)


def _attention(
    g: GraphBuilder,
    x: str,
    w_qkv: F32,
    b_qkv: F32 | None,
    cfg: ModernBertConfig,
    layer_type: str,
    masks: Masks,
    tables: dict[str, tuple[str, str, str, str]],
    name: str,
    fused: bool,
) -> str:
    """Bidirectional self-attention with rotary q/k, before Wo: (B, T, H)."""
    h, n, d = cfg.hidden, cfg.heads, cfg.head_dim
    qkv = g.op("MatMul", x, g.weight(f"{name}.qkv_weight", w_qkv))  # (B, T, 3H)
    if b_qkv is not None:
        qkv = g.op("Add", qkv, g.weight(f"{name}.qkv_bias", b_qkv))
    q, k, v = g.op_multi("Split", qkv, g.const([h, h, h]), axis=-1, outputs=3)
    cos, sin, cos_half, sin_half = tables[layer_type]
    if fused:
        # RotaryEmbedding on (B, T, N D) from position 0, then one MultiHeadAttention
        rotated = []
        for t in (q, k):
            rotated.append(
                g.op(
                    "RotaryEmbedding",
                    t,
                    g.const([0]),
                    cos_half,
                    sin_half,
                    domain=MS_DOMAIN,
                    interleaved=0,
                    num_heads=n,
                )
            )
        inputs = [rotated[0], rotated[1], v, "", masks.key_mask]
        if layer_type == SLIDING:
            inputs = [rotated[0], rotated[1], v, "", "", masks.bias[SLIDING]]
        return g.op(
            "MultiHeadAttention",
            *inputs,
            domain=MS_DOMAIN,
            num_heads=n,
            scale=1.0 / math.sqrt(d),
        )
    heads_shape = g.const([0, 0, n, d])
    q = rotary.apply_rotary(g, g.op("Reshape", q, heads_shape), cos, sin, d, d)  # (B, T, N, D)
    k = rotary.apply_rotary(g, g.op("Reshape", k, heads_shape), cos, sin, d, d)
    q = g.op("Transpose", q, perm=[0, 2, 1, 3])  # (B, N, T, D)
    k = g.op("Transpose", k, perm=[0, 2, 3, 1])  # (B, N, D, T)
    v = g.op("Transpose", g.op("Reshape", v, heads_shape), perm=[0, 2, 1, 3])  # (B, N, T, D)
    scores = g.op("Mul", g.op("MatMul", q, k), g.const(1.0 / math.sqrt(d), np.float32))
    probs = g.op("Softmax", g.op("Add", scores, masks.bias[layer_type]), axis=-1)
    context = g.op("Transpose", g.op("MatMul", probs, v), perm=[0, 2, 1, 3])  # (B, T, N, D)
    return g.op("Reshape", context, g.const([0, 0, h]))  # (B, T, H)


def _rope_tables(
    g: GraphBuilder, cfg: ModernBertConfig, like: str, fused: bool
) -> dict[str, tuple[str, str, str, str]]:
    tables: dict[str, tuple[str, str, str, str]] = {}
    d = cfg.head_dim
    for layer_type in sorted(set(cfg.layer_types)):
        inv = rotary.default_inv_freq(d, cfg.theta[layer_type])
        cos_np, sin_np = rotary.cos_sin_tables(inv, cfg.max_positions)  # (P, D)
        name = f"rope.{layer_type}"
        if fused:  # RotaryEmbedding holds each frequency once: (P, D / 2)
            cos_half = g.weight(f"{name}.cos_half", np.ascontiguousarray(cos_np[:, : d // 2]))
            sin_half = g.weight(f"{name}.sin_half", np.ascontiguousarray(sin_np[:, : d // 2]))
            tables[layer_type] = ("", "", cos_half, sin_half)
        else:
            cos, sin = rotary.prefix_tables(g, cos_np, sin_np, like, name)  # (T, D)
            tables[layer_type] = (cos, sin, "", "")
    return tables


@dataclass
class Encoder:
    hidden_state: str  # (B, T, H), after final_norm
    cfg: ModernBertConfig


def build_encoder(
    g: GraphBuilder,
    store: WeightStore,
    cfg: ModernBertConfig,
    fused: bool,
    input_ids: str,
    attention_mask: str,
) -> Encoder:
    h, inter = cfg.hidden, cfg.intermediate
    word = store.take("embeddings.tok_embeddings.weight", (cfg.vocab, h))
    x = g.op("Gather", g.weight("embeddings.tok", word), input_ids)  # (B, T, H)
    x = layers.layer_norm(g, x, *_norm(store, "embeddings.norm", cfg), cfg.eps, "emb.norm")
    masks = _masks(g, cfg, attention_mask)
    tables = _rope_tables(g, cfg, input_ids, fused)
    residual = x
    pending: str | None = None  # the last MLP's output, not yet added to the residual
    for i in range(cfg.layers):
        p, name = f"layers.{i}.", f"layer{i}"
        if pending is None:
            normed = residual  # layer 0 has no attention norm
            if f"{p}attn_norm.weight" in store:
                raise WeightMappingError(f"unexpected tensor {p}attn_norm.weight in layer 0")
        else:
            gamma, beta = _norm(store, p + "attn_norm", cfg)
            normed, residual = skip_layer_norm(
                g, pending, residual, gamma, beta, cfg.eps, f"{name}.attn_norm", fused
            )
        w_qkv = store.take(p + "attn.Wqkv.weight", (3 * h, h)).T.copy()  # (H, 3H)
        b_qkv = store.take(p + "attn.Wqkv.bias", (3 * h,)) if cfg.attention_bias else None
        attn = _attention(
            g, normed, w_qkv, b_qkv, cfg, cfg.layer_types[i], masks, tables, name, fused
        )
        b_o = store.take(p + "attn.Wo.bias", (h,)) if cfg.attention_bias else None
        attn = layers.linear(g, attn, store.take(p + "attn.Wo.weight", (h, h)), b_o, name + ".Wo")
        gamma, beta = _norm(store, p + "mlp_norm", cfg)
        normed, residual = skip_layer_norm(
            g, attn, residual, gamma, beta, cfg.eps, f"{name}.mlp_norm", fused
        )
        # GeGLU: Wi gives [input | gate]; act(input) * gate
        b_i = store.take(p + "mlp.Wi.bias", (2 * inter,)) if cfg.mlp_bias else None
        wi = layers.linear(
            g, normed, store.take(p + "mlp.Wi.weight", (2 * inter, h)), b_i, name + ".Wi"
        )
        up, gate = g.op_multi("Split", wi, g.const([inter, inter]), axis=-1, outputs=2)
        act = layers.activation(g, up, None, cfg.act, name + ".act", fused)
        b_o2 = store.take(p + "mlp.Wo.bias", (h,)) if cfg.mlp_bias else None
        pending = layers.linear(
            g,
            g.op("Mul", act, gate),
            store.take(p + "mlp.Wo.weight", (h, inter)),
            b_o2,
            name + ".mlp_Wo",
        )
    gamma, beta = _norm(store, "final_norm", cfg)
    if pending is None:
        out = layers.layer_norm(g, residual, gamma, beta, cfg.eps, "final_norm")
    else:
        out, _ = skip_layer_norm(g, pending, residual, gamma, beta, cfg.eps, "final_norm", fused)
    return Encoder(hidden_state=out, cfg=cfg)


def _classifier(
    g: GraphBuilder, store: WeightStore, enc: Encoder, attention_mask: str, fused: bool
) -> str:
    """ModernBertForSequenceClassification: pool, head (dense, act, norm), classifier."""
    cfg, h = enc.cfg, enc.cfg.hidden
    if cfg.classifier_pooling == "cls":
        pooled = g.op("Gather", enc.hidden_state, g.const(0), axis=1)  # (B, H)
    else:
        mask = g.op("Unsqueeze", g.op("Cast", attention_mask, to=1), g.const([2]))  # (B, T, 1)
        summed = g.op("ReduceSum", g.op("Mul", enc.hidden_state, mask), g.const([1]), keepdims=0)
        counts = g.op("ReduceSum", mask, g.const([1]), keepdims=0)  # (B, 1)
        pooled = g.op("Div", summed, counts)  # (B, H)
    bias = store.take("head.dense.bias", (h,)) if cfg.classifier_bias else None
    x = layers.linear(g, pooled, store.take("head.dense.weight", (h, h)), bias, "head.dense")
    x = layers.activation(g, x, None, cfg.classifier_act, "head.act", fused)
    x = layers.layer_norm(g, x, *_norm(store, "head.norm", cfg), cfg.eps, "head.norm")
    shape = store.shape("classifier.weight")
    if len(shape) != 2 or shape[1] != h:
        raise WeightMappingError(
            f"tensor 'classifier.weight' has shape {shape}, expected (labels, {h})"
        )
    labels = shape[0]
    return layers.linear(
        g,
        x,
        store.take("classifier.weight", (labels, h)),
        store.take("classifier.bias", (labels,)),
        "classifier",
    )


def build(ctx: ExportContext) -> GraphOutput:
    """The graph for ``ctx.head``: hidden states or classifier logits."""
    cfg = ModernBertConfig.from_config(ctx.config)
    store = WeightStore(ctx.weight_files, strip_prefixes=PREFIXES)
    g = ctx.g
    enc = build_encoder(g, store, cfg, ctx.fused, ctx.input_ids, ctx.attention_mask)
    if ctx.head is Head.BASE:
        # the MLM head of a ModernBertForMaskedLM checkpoint is not part of an embedder
        store.ignore("head.")
        store.ignore("decoder.")
        out = GraphOutput(
            enc.hidden_state, OutputName.LAST_HIDDEN_STATE, ["batch", "sequence", cfg.hidden]
        )
    elif ctx.head is Head.CLASSIFIER:
        logits = _classifier(g, store, enc, ctx.attention_mask, ctx.fused)
        out = GraphOutput(logits, OutputName.LOGITS, ["batch", "labels"])
    else:
        raise UnsupportedModelError(f"the {ctx.head.value} head is not available for ModernBERT")
    store.finish()
    return out
