"""DeBERTa-v2 / v3 encoders and their sequence classifiers (NLI cross-encoders, rerankers).

A post-LayerNorm BERT-like encoder whose attention adds disentangled relative-position
terms to the content scores: content-to-position (c2p, the query against the key-side
projection of the relative embedding of i - j) and position-to-content (p2c, the key
against the query-side projection of the embedding of the same distance), all divided by
sqrt(head_dim * (1 + number of terms)). Distances are clipped to ``position_buckets`` (or
``max_relative_positions``) with log buckets beyond half of it; the relative embeddings
may be layer-normed first (``norm_rel_ebd``) and projected by the layer's own q/k weights
(``share_att_key``) or by separate ``pos_*_proj`` ones. An optional Conv1d layer
(``conv_kernel_size``) is applied after the first layer. Embeddings: word (optionally in
a smaller ``embedding_size`` projected up), absolute positions only when
``position_biased_input``, token types when ``type_vocab_size`` > 0; padded positions are
zeroed after the embedding norm, as transformers does, which the conv then sees.

The relative tables depend only on i - j, so they are computed once for
``max_position_embeddings`` positions (index tables and the projected relative embeddings
of every layer, in float32 as transformers rounds them) and sliced to the batch's length.

Heads: BASE (hidden states) and CLASSIFIER (ContextPooler: act(dense(h[:, 0])), then
``classifier``), as TEI serves DeBERTa-v2. The attention runs in plain operators in both
variants: ONNX Runtime's fused attention has no place for the c2p / p2c terms' own scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tei_ort.engines.base import OutputName
from tei_ort.exporters import blocks, layers
from tei_ort.exporters.deberta_config import DebertaConfig, relative_positions
from tei_ort.exporters.errors import UnsupportedModelError, WeightMappingError
from tei_ort.exporters.export import ExportContext, GraphOutput
from tei_ort.exporters.graph import GraphBuilder
from tei_ort.exporters.head_kind import Head
from tei_ort.exporters.weights import WeightStore

F32 = NDArray[np.float32]
I64 = NDArray[np.int64]

PREFIXES = ("deberta.",)
# tensors of masked-LM / replaced-token heads, never part of an embedder or a classifier
UNUSED_HEADS = ("cls.", "lm_predictions.", "mask_predictions.")


def _layer_norm_np(x: F32, gamma: F32, beta: F32, eps: float) -> F32:
    mean = x.mean(-1, keepdims=True, dtype=np.float32)
    var = ((x - mean) ** 2).mean(-1, keepdims=True, dtype=np.float32)
    out: F32 = ((x - mean) / np.sqrt(var + np.float32(eps)) * gamma + beta).astype(np.float32)
    return out


@dataclass(frozen=True)
class Relative:
    """What every layer's disentangled terms share: index tables sliced to (T, T).

    The tables index the flattened (T * 2S) last two axes of the (B, N, T, 2S) products,
    so one Gather with a (T, T) index picks each pair's term: no index is expanded over
    batch and heads (GatherElements would need one of (B, N, T, T)).
    """

    c2p_index: str  # (T, T) int64: [i, j] -> i * 2S + c2p row of (i, j)
    p2c_index: str  # (T, T) int64: [i, j] -> j * 2S + p2c row of (j, i), already transposed
    embeddings: F32  # (2 span, H), normed when norm_rel_ebd


def _relative(g: GraphBuilder, store: WeightStore, cfg: DebertaConfig, like: str) -> Relative:
    rel = relative_positions(cfg, cfg.max_positions)  # (P, P)
    top = 2 * cfg.span - 1
    width = 2 * cfg.span
    rows = np.arange(cfg.max_positions, dtype=np.int64)[:, None] * width  # (P, 1)
    c2p = rows + np.clip(rel + cfg.span, 0, top)  # [i, j]
    p2c = (rows + np.clip(-rel + cfg.span, 0, top)).T  # [j, i] -> [i, j]
    seq_len = g.op("Gather", g.op("Shape", like), g.const([1]))  # (1,)
    ends = g.op("Concat", seq_len, seq_len, axis=0)  # (2,)

    def sliced(name: str, table: I64) -> str:
        return g.op("Slice", g.weight(name, table), g.const([0, 0]), ends, g.const([0, 1]))

    embeddings = store.take("encoder.rel_embeddings.weight", (2 * cfg.span, cfg.hidden))
    if cfg.norm_rel_ebd:
        gamma = store.take("encoder.LayerNorm.weight", (cfg.hidden,))
        beta = store.take("encoder.LayerNorm.bias", (cfg.hidden,))
        embeddings = _layer_norm_np(embeddings, gamma, beta, cfg.eps)
    return Relative(sliced("rel.c2p_index", c2p), sliced("rel.p2c_index", p2c), embeddings)


def _project(rel: F32, weight: F32, bias: F32, cfg: DebertaConfig) -> F32:
    """A Linear applied to the relative embeddings, split by head: (N, 2 span, D)."""
    out = (rel @ weight.T + bias).astype(np.float32)  # (2S, N D)
    return np.ascontiguousarray(out.reshape(-1, cfg.heads, cfg.head_size).transpose(1, 0, 2))


# --- layers ----------------------------------------------------------------------------------


@dataclass
class AttentionWeights:
    q: tuple[F32, F32]  # (N D, H), (N D,)
    k: tuple[F32, F32]
    v: tuple[F32, F32]
    pos_key: F32 | None  # (N, 2S, D): key side of c2p
    pos_query: F32 | None  # (N, 2S, D): query side of p2c


def _linear(store: WeightStore, prefix: str, out: int, inp: int) -> tuple[F32, F32]:
    return store.take(prefix + ".weight", (out, inp)), store.take(prefix + ".bias", (out,))


def _take_attention(
    store: WeightStore, cfg: DebertaConfig, p: str, rel: Relative | None
) -> AttentionWeights:
    a, h = cfg.all_head, cfg.hidden
    q = _linear(store, p + "query_proj", a, h)
    k = _linear(store, p + "key_proj", a, h)
    v = _linear(store, p + "value_proj", a, h)
    pos_key = pos_query = None
    if rel is not None:
        if cfg.c2p:
            source = k if cfg.share_att_key else _linear(store, p + "pos_key_proj", a, h)
            pos_key = _project(rel.embeddings, *source, cfg)
        if cfg.p2c:
            source = q if cfg.share_att_key else _linear(store, p + "pos_query_proj", a, h)
            pos_query = _project(rel.embeddings, *source, cfg)
    return AttentionWeights(q, k, v, pos_key, pos_query)


def _heads(g: GraphBuilder, x: str, weights: tuple[F32, F32], cfg: DebertaConfig, name: str) -> str:
    """x @ W.T + b split by head: (B, N, T, D)."""
    y = layers.linear(g, x, weights[0], weights[1], name)  # (B, T, N D)
    y = g.op("Reshape", y, g.const([0, 0, cfg.heads, cfg.head_size]))
    return g.op("Transpose", y, perm=[0, 2, 1, 3])


def _attention(
    g: GraphBuilder,
    x: str,
    w: AttentionWeights,
    cfg: DebertaConfig,
    rel: Relative | None,
    key_bias: str,
    name: str,
) -> str:
    """Disentangled self-attention before its output dense: (B, T, N D)."""
    q = _heads(g, x, w.q, cfg, name + ".q")  # (B, N, T, D)
    k = _heads(g, x, w.k, cfg, name + ".k")
    v = _heads(g, x, w.v, cfg, name + ".v")
    scale = g.const(cfg.scale, np.float32)
    scores = g.op("Div", g.op("MatMul", q, g.op("Transpose", k, perm=[0, 1, 3, 2])), scale)
    flat = g.const([0, 0, -1])  # (B, N, T, 2S) -> (B, N, T * 2S)
    if rel is not None and w.pos_key is not None:
        # c2p[b, n, i, j] = q_i . pos_key[c2p_index(i, j)]
        table = g.weight(name + ".pos_key_t", np.ascontiguousarray(w.pos_key.transpose(0, 2, 1)))
        c2p = g.op("Reshape", g.op("MatMul", q, table), flat)  # (B, N, T * 2S)
        c2p = g.op("Gather", c2p, rel.c2p_index, axis=2)  # (B, N, T, T)
        scores = g.op("Add", scores, g.op("Div", c2p, scale))
    if rel is not None and w.pos_query is not None:
        # p2c[b, n, i, j] = k_j . pos_query[p2c_index(j, i)]
        table = g.weight(
            name + ".pos_query_t", np.ascontiguousarray(w.pos_query.transpose(0, 2, 1))
        )
        p2c = g.op("Reshape", g.op("MatMul", k, table), flat)  # (B, N, T_key * 2S)
        p2c = g.op("Gather", p2c, rel.p2c_index, axis=2)  # (B, N, T_query, T_key)
        scores = g.op("Add", scores, g.op("Div", p2c, scale))
    probs = g.op("Softmax", g.op("Add", scores, key_bias), axis=-1)  # (B, N, T, T)
    context = g.op("Transpose", g.op("MatMul", probs, v), perm=[0, 2, 1, 3])  # (B, T, N, D)
    return g.op("Reshape", context, g.const([0, 0, cfg.all_head]))


def _conv(
    g: GraphBuilder,
    store: WeightStore,
    cfg: DebertaConfig,
    embedded: str,
    residual: str,
    mask: str,
    fused: bool,
) -> str:
    """ConvLayer: LayerNorm(residual + act(conv(embedded) with padded rows zeroed)) * mask."""
    h, k = cfg.hidden, cfg.conv_kernel
    if h % cfg.conv_groups:
        raise UnsupportedModelError(f"conv_groups {cfg.conv_groups} does not divide {h}")
    weight = store.take("encoder.conv.conv.weight", (h, h // cfg.conv_groups, k))
    bias = store.take("encoder.conv.conv.bias", (h,))
    channels = g.op("Transpose", embedded, perm=[0, 2, 1])  # (B, H, T)
    # zero the padding in the (B, H, T) layout, which the CPU target's token packing
    # leaves padded, so that the kernel reads zeros there as in transformers
    mask_bht = g.op("Unsqueeze", mask, g.const([1]))  # (B, 1, T)
    channels = g.op("Mul", channels, mask_bht)
    pad = (k - 1) // 2
    out = g.op(
        "Conv",
        channels,
        g.weight("conv.weight", weight),
        g.weight("conv.bias", bias),
        group=cfg.conv_groups,
        kernel_shape=[k],
        pads=[pad, pad],
    )  # (B, H, T')
    out = g.op("Mul", out, mask_bht)  # padded positions -> 0 before the activation
    out = g.op("Transpose", out, perm=[0, 2, 1])  # (B, T, H)
    if cfg.conv_act == "tanh":
        out = g.op("Tanh", out)
    else:
        out = layers.activation(g, out, None, cfg.conv_act, "conv.act", fused)
    normed = layers.layer_norm(
        g,
        g.op("Add", residual, out),
        store.take("encoder.conv.LayerNorm.weight", (h,)),
        store.take("encoder.conv.LayerNorm.bias", (h,)),
        cfg.eps,
        "conv.ln",
    )
    return g.op("Mul", normed, g.op("Unsqueeze", mask, g.const([2])))  # (B, T, H)


def _embeddings(
    g: GraphBuilder, store: WeightStore, cfg: DebertaConfig, input_ids: str, mask: str
) -> str:
    e = cfg.embedding_size
    word = store.take("embeddings.word_embeddings.weight", (cfg.vocab, e))
    x = g.op("Gather", g.weight("embeddings.word", word), input_ids)  # (B, T, E)
    if cfg.position_biased_input:
        table = store.take("embeddings.position_embeddings.weight", (cfg.max_positions, e))
        seq_len = g.op("Gather", g.op("Shape", input_ids), g.const([1]))  # (1,)
        positions = g.op(
            "Slice", g.weight("embeddings.position", table), g.const([0]), seq_len, g.const([0])
        )  # (T, E)
        x = g.op("Add", x, positions)
    else:
        # transformers builds no table then, but old checkpoints may still carry one
        store.ignore("embeddings.position_embeddings.")
    x = blocks.add_token_types(g, store, x, cfg.type_vocab, e)
    if e != cfg.hidden:
        proj = store.take("embeddings.embed_proj.weight", (cfg.hidden, e))
        x = layers.linear(g, x, proj, None, "embeddings.embed_proj")
    x = layers.layer_norm(
        g,
        x,
        store.take("embeddings.LayerNorm.weight", (cfg.hidden,)),
        store.take("embeddings.LayerNorm.bias", (cfg.hidden,)),
        cfg.eps,
        "embeddings.ln",
    )
    return g.op("Mul", x, g.op("Unsqueeze", mask, g.const([2])))  # padded positions -> 0


def build_encoder(
    g: GraphBuilder,
    store: WeightStore,
    cfg: DebertaConfig,
    fused: bool,
    input_ids: str,
    attention_mask: str,
) -> str:
    """The last layer's hidden states, (B, T, H)."""
    h = cfg.hidden
    mask = g.op("Cast", attention_mask, to=1)  # (B, T) float
    embedded = _embeddings(g, store, cfg, input_ids, mask)
    rel = _relative(g, store, cfg, input_ids) if cfg.relative_attention else None
    key_bias = layers.additive_mask(g, attention_mask)  # (B, 1, 1, T)
    x = embedded
    for i in range(cfg.layers):
        p, name = f"encoder.layer.{i}.", f"layer{i}"
        w = _take_attention(store, cfg, p + "attention.self.", rel)
        context = _attention(g, x, w, cfg, rel, key_bias, name)
        x = blocks.project_add_norm(
            g,
            store,
            context,
            x,
            projection=p + "attention.output.dense",
            norm=p + "attention.output.LayerNorm",
            in_features=cfg.all_head,
            hidden=h,
            eps=cfg.eps,
            name=name + ".attn_out",
            fused=fused,
        )
        up_w, up_b = _linear(store, p + "intermediate.dense", cfg.intermediate, h)
        up = g.op("MatMul", x, g.weight(f"{name}.up.weight_t", up_w.T.copy()))  # (B, T, I)
        up = layers.activation(g, up, up_b, cfg.act, name + ".act", fused)
        x = blocks.project_add_norm(
            g,
            store,
            up,
            x,
            projection=p + "output.dense",
            norm=p + "output.LayerNorm",
            in_features=cfg.intermediate,
            hidden=h,
            eps=cfg.eps,
            name=name + ".out",
            fused=fused,
        )
        if i == 0 and cfg.conv_kernel > 0:
            x = _conv(g, store, cfg, embedded, x, mask, fused)
    return x


def _classifier(g: GraphBuilder, store: WeightStore, cfg: DebertaConfig, hidden: str) -> str:
    """ContextPooler (act(dense(h[:, 0]))) then the classifier: (B, L) logits."""
    if cfg.pooler_size != cfg.hidden:
        raise UnsupportedModelError(
            f"pooler_hidden_size {cfg.pooler_size} differs from hidden_size {cfg.hidden}"
        )
    first = g.op("Gather", hidden, g.const(0), axis=1)  # (B, H)
    dense_w, dense_b = _linear(store, "pooler.dense", cfg.hidden, cfg.hidden)
    pooled = layers.linear(g, first, dense_w, dense_b, "pooler.dense")
    pooled = layers.activation(g, pooled, None, cfg.pooler_act, "pooler.act", fused=False)
    shape = store.shape("classifier.weight")
    if len(shape) != 2 or shape[1] != cfg.hidden:
        raise WeightMappingError(
            f"tensor 'classifier.weight' has shape {shape}, expected (labels, {cfg.hidden})"
        )
    labels = shape[0]
    return layers.linear(
        g,
        pooled,
        store.take("classifier.weight", (labels, cfg.hidden)),
        store.take("classifier.bias", (labels,)),
        "classifier",
    )


def build(ctx: ExportContext) -> GraphOutput:
    """The graph for ``ctx.head``: hidden states or classifier logits."""
    cfg = DebertaConfig.from_config(ctx.config)
    store = WeightStore(ctx.weight_files, strip_prefixes=PREFIXES)
    g = ctx.g
    hidden = build_encoder(g, store, cfg, ctx.fused, ctx.input_ids, ctx.attention_mask)
    for prefix in UNUSED_HEADS:
        store.ignore(prefix)
    if ctx.head is Head.BASE:
        store.ignore("pooler.")
        store.ignore("classifier.")
        out = GraphOutput(hidden, OutputName.LAST_HIDDEN_STATE, ["batch", "sequence", cfg.hidden])
    elif ctx.head is Head.CLASSIFIER:
        logits = _classifier(g, store, cfg, hidden)
        out = GraphOutput(logits, OutputName.LOGITS, ["batch", "labels"])
    else:
        raise UnsupportedModelError(f"the {ctx.head.value} head is not available for DeBERTa-v2")
    store.finish()
    return out
