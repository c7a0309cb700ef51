"""Decoder-only embedders and re-rankers: qwen2, qwen3, mistral, llama.

One pre-RMSNorm causal transformer with rotary positions, grouped-query attention and a
SwiGLU MLP. The families differ in small switches read from the config: Qwen2 has q/k/v
biases, Qwen3 RMS-normalises each head's q and k before the rotation, Llama may have
biases (``attention_bias``, ``mlp_bias``), Mistral (and Qwen with ``use_sliding_window``)
limits attention to a window of recent tokens. Qwen3 embedders with
``use_bidirectional_attention`` (pplx-embed, voyage-4-nano) attend in both directions and
may project the final hidden states with a bias-free ``linear`` layer (``linear.weight``).

Heads: BASE gives ``last_hidden_state`` (last-token pooling runs in numpy); CLASSIFIER
is ``*ForSequenceClassification`` (``score`` on the last real token); YES_NO_LOGIT scores
a causal LM re-ranker (Qwen3-Reranker): lm_head logit of "yes" minus logit of "no" at the
last real token, so that sigmoid gives P(yes) = softmax([no, yes])[1].

Padding: the batcher pads on the right. Under causal attention a real token never sees a
later position, so its output does not depend on the padding, and the last real token is
the one at ``sum(attention_mask) - 1``. Bidirectional attention masks padded keys instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tei_ort.engines.base import OutputName
from tei_ort.exporters import layers, rotary
from tei_ort.exporters.decoder_config import FULL, SLIDING, DecoderConfig
from tei_ort.exporters.errors import UnsupportedModelError, WeightMappingError
from tei_ort.exporters.export import ExportContext, GraphOutput
from tei_ort.exporters.graph import MS_DOMAIN, GraphBuilder
from tei_ort.exporters.head_kind import Head
from tei_ort.exporters.weights import WeightStore

F32 = NDArray[np.float32]

# checkpoints of *Model saved standalone have bare names; *ForCausalLM ones put "model."
PREFIXES = ("model.",)
# a Qwen3 embedder's projection of its hidden states (voyage-4-nano)
PROJECTION = "linear.weight"


@dataclass
class LayerWeights:
    ln1: F32  # (H,)
    w_qkv: F32  # (H, (N + 2K) D), columns [q | k | v], ready for x @ w
    b_qkv: F32 | None
    q_norm: F32 | None  # (D,)
    k_norm: F32 | None
    w_o: F32  # (N D, H)
    b_o: F32 | None
    ln2: F32
    w_gate_up: F32  # (H, 2I), columns [gate | up]
    b_gate_up: F32 | None
    w_down: F32  # (I, H)
    b_down: F32 | None


def take_layer(store: WeightStore, cfg: DecoderConfig, i: int) -> LayerWeights:
    p = f"layers.{i}."
    h, d, inter = cfg.hidden, cfg.head_dim, cfg.intermediate
    sizes = {"q": cfg.heads * d, "k": cfg.kv_heads * d, "v": cfg.kv_heads * d}
    qkv = [store.take(f"{p}self_attn.{x}_proj.weight", (n, h)) for x, n in sizes.items()]
    b_qkv = None
    if cfg.qkv_bias:
        b_qkv = np.concatenate(
            [store.take(f"{p}self_attn.{x}_proj.bias", (n,)) for x, n in sizes.items()]
        )

    def mlp_weight(name: str, shape: tuple[int, int]) -> tuple[F32, F32 | None]:
        weight = store.take(f"{p}mlp.{name}.weight", shape)
        bias = store.take(f"{p}mlp.{name}.bias", (shape[0],)) if cfg.mlp_bias else None
        return weight, bias

    gate, b_gate = mlp_weight("gate_proj", (inter, h))
    up, b_up = mlp_weight("up_proj", (inter, h))
    down, b_down = mlp_weight("down_proj", (h, inter))
    n_d = cfg.heads * d
    return LayerWeights(
        ln1=store.take(f"{p}input_layernorm.weight", (h,)),
        # one transposing copy for the three (or two) matrices, never a second one
        w_qkv=np.concatenate([w.T for w in qkv], axis=1),
        b_qkv=b_qkv,
        q_norm=store.take(f"{p}self_attn.q_norm.weight", (d,)) if cfg.qk_norm else None,
        k_norm=store.take(f"{p}self_attn.k_norm.weight", (d,)) if cfg.qk_norm else None,
        w_o=store.take(f"{p}self_attn.o_proj.weight", (h, n_d)).T.copy(),
        b_o=store.take(f"{p}self_attn.o_proj.bias", (h,)) if cfg.o_bias else None,
        ln2=store.take(f"{p}post_attention_layernorm.weight", (h,)),
        w_gate_up=np.concatenate([gate.T, up.T], axis=1),
        b_gate_up=None if b_gate is None or b_up is None else np.concatenate([b_gate, b_up]),
        w_down=down.T.copy(),
        b_down=b_down,
    )


# --- graph pieces ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Masks:
    """What the attention of each layer type needs, built once for all layers."""

    by_type: dict[str, str]  # plain: (B, 1, 1, 1|T, T) additive bias per layer type
    seqlens_k: str  # fused: (B,) int32, last real position of each row
    total_len: str  # fused: () int32, T
    # bidirectional, fused variant (MultiHeadAttention): the (B, T) int32 key mask of
    # global layers and the (B, 1, T, T) additive bias of sliding ones
    key_mask: str = ""
    window_bias: str = ""


def masks_for(g: GraphBuilder, cfg: DecoderConfig, attention_mask: str, fused: bool) -> Masks:
    """The attention masks of every layer type (GroupQueryAttention's inputs when fused)."""
    seq_len = g.op("Gather", g.op("Shape", attention_mask), g.const(1))  # ()
    if fused:
        lengths = g.op("ReduceSum", attention_mask, g.const([1]), keepdims=0)  # (B,)
        seqlens_k = g.op("Cast", g.op("Sub", lengths, g.const(1)), to=6)  # INT32
        return Masks({}, seqlens_k, g.op("Cast", seq_len, to=6))
    positions = g.op("Range", g.const(0), seq_len, g.const(1))  # (T,)
    query = g.op("Unsqueeze", positions, g.const([1]))  # (T, 1)
    key = g.op("Unsqueeze", positions, g.const([0]))  # (1, T)
    key_valid = g.op("Cast", attention_mask, to=9)  # BOOL (B, T)
    key_valid = g.op("Unsqueeze", key_valid, g.const([1, 2]))  # (B, 1, 1, T)
    by_type: dict[str, str] = {}
    window_bias = ""
    for layer_type in sorted(set(cfg.layer_types)):
        if layer_type == FULL and not cfg.causal:
            allowed = key_valid  # (B, 1, 1, T): every real key
        else:
            allowed = _allowed_positions(g, cfg, layer_type, query, key)  # (T, T)
            allowed = g.op("And", g.op("Unsqueeze", allowed, g.const([0, 1])), key_valid)
        bias = g.op(
            "Where", allowed, g.const(0.0, np.float32), g.const(layers.MASK_FILL, np.float32)
        )  # (B, 1, T, T)
        by_type[layer_type] = g.op("Unsqueeze", bias, g.const([2]))  # (B, 1, 1, 1|T, T)
        if layer_type == SLIDING and not cfg.causal:
            window_bias = bias
    if cfg.causal:
        return Masks(by_type, "", "")
    return Masks(by_type, "", "", g.op("Cast", attention_mask, to=6), window_bias)


def _allowed_positions(
    g: GraphBuilder, cfg: DecoderConfig, layer_type: str, query: str, key: str
) -> str:
    """(T, T) bool: which key positions a query position may attend to."""
    distance = g.op("Sub", query, key)  # (T, T): query - key
    if cfg.causal:
        allowed = g.op("Not", g.op("Less", distance, g.const(0)))  # key <= query
        if layer_type != SLIDING:
            return allowed
        assert cfg.sliding_window is not None
        # transformers: key > query - window, i.e. the window counts the query itself
        return g.op("And", allowed, g.op("Less", distance, g.const(cfg.sliding_window)))
    assert layer_type == SLIDING and cfg.sliding_window is not None
    # bidirectional window (Gemma3 as transformers and TEI read it): |query - key| <= W // 2
    return g.op("Not", g.op("Greater", g.op("Abs", distance), g.const(cfg.sliding_window // 2)))


def fused_attention(cfg: DecoderConfig, fused: bool) -> bool:
    """Whether ORT's GroupQueryAttention runs the attention: it attends causally only."""
    return fused and cfg.causal


def _fused_rotary(cfg: DecoderConfig) -> bool:
    # GroupQueryAttention rotates whole heads, and only heads of a multiple of 16 features
    return cfg.rotary_dim == cfg.head_dim and cfg.head_dim % 16 == 0


def attention(
    g: GraphBuilder,
    x: str,
    w: LayerWeights,
    cfg: DecoderConfig,
    layer_type: str,
    masks: Masks,
    tables: tuple[str, str, str, str],
    name: str,
    fused: bool,
) -> str:
    """Grouped-query self-attention with rotary positions, before o_proj: (B, T, N D).

    ``fused`` is the variant's; the attention itself is fused only where
    ``fused_attention`` allows, and ``masks`` must have been built to match.
    """
    n, k, d = cfg.heads, cfg.kv_heads, cfg.head_dim
    variant_fused, fused = fused, fused_attention(cfg, fused)
    qkv = g.op("MatMul", x, g.weight(f"{name}.qkv_weight", w.w_qkv))  # (B, T, (N + 2K) D)
    if w.b_qkv is not None:
        qkv = g.op("Add", qkv, g.weight(f"{name}.qkv_bias", w.b_qkv))
    q, key, v = g.op_multi("Split", qkv, g.const([n * d, k * d, k * d]), axis=-1, outputs=3)
    q = g.op("Reshape", q, g.const([0, 0, n, d]))  # (B, T, N, D)
    key = g.op("Reshape", key, g.const([0, 0, k, d]))  # (B, T, K, D)
    if w.q_norm is not None and w.k_norm is not None:
        q = layers.rms_norm(g, q, w.q_norm, cfg.eps, f"{name}.q_norm")  # over D of (B, T, N, D)
        key = layers.rms_norm(g, key, w.k_norm, cfg.eps, f"{name}.k_norm")
    cos, sin, cos_half, sin_half = tables
    fused_rotary = fused and _fused_rotary(cfg)
    if not fused_rotary:
        q = rotary.apply_rotary(g, q, cos, sin, cfg.rotary_dim, d)
        key = rotary.apply_rotary(g, key, cos, sin, cfg.rotary_dim, d)
    if fused:
        window = cfg.sliding_window if layer_type == SLIDING else None
        inputs = [
            g.op("Reshape", q, g.const([0, 0, n * d])),  # (B, T, N D)
            g.op("Reshape", key, g.const([0, 0, k * d])),  # (B, T, K D)
            v,
            "",  # no past key/value: one pass over the whole prompt
            "",
            masks.seqlens_k,
            masks.total_len,
        ]
        if fused_rotary:
            inputs += [cos_half, sin_half]
        return g.op_multi(
            "GroupQueryAttention",
            *inputs,
            domain=MS_DOMAIN,
            outputs=3,
            num_heads=n,
            kv_num_heads=k,
            local_window_size=-1 if window is None else window,
            do_rotary=int(fused_rotary),
            rotary_interleaved=0,
            scale=cfg.scale,
        )[0]
    groups = n // k
    if variant_fused and not cfg.causal:
        return _multi_head(g, q, key, v, cfg, layer_type, masks)
    # (B, K, G, T, D) queries against (B, K, 1, D, T) keys: the K/V heads are broadcast
    # over their G query heads instead of being copied
    q = g.op("Transpose", g.op("Reshape", q, g.const([0, 0, k, groups, d])), perm=[0, 2, 3, 1, 4])
    key = g.op("Unsqueeze", g.op("Transpose", key, perm=[0, 2, 3, 1]), g.const([2]))
    v = g.op("Reshape", v, g.const([0, 0, k, d]))
    v = g.op("Unsqueeze", g.op("Transpose", v, perm=[0, 2, 1, 3]), g.const([2]))  # (B,K,1,T,D)
    scores = g.op("Mul", g.op("MatMul", q, key), g.const(cfg.scale, np.float32))
    probs = g.op("Softmax", g.op("Add", scores, masks.by_type[layer_type]), axis=-1)
    context = g.op("MatMul", probs, v)  # (B, K, G, T, D)
    context = g.op("Transpose", context, perm=[0, 3, 1, 2, 4])  # (B, T, K, G, D)
    return g.op("Reshape", context, g.const([0, 0, n * d]))  # (B, T, N D)


def _multi_head(
    g: GraphBuilder, q: str, key: str, v: str, cfg: DecoderConfig, layer_type: str, masks: Masks
) -> str:
    """Bidirectional attention in ORT's MultiHeadAttention, each K/V head repeated for its
    G query heads (query head h reads K/V head h // G, as transformers' repeat_kv)."""
    n, k, d = cfg.heads, cfg.kv_heads, cfg.head_dim
    groups = n // k
    repeated = []
    for t in (key, g.op("Reshape", v, g.const([0, 0, k, d]))):  # (B, T, K, D)
        if groups > 1:
            t = g.op("Unsqueeze", t, g.const([3]))  # (B, T, K, 1, D)
            shape = g.op("Concat", g.op("Shape", t, end=3), g.const([groups, d]), axis=0)
            t = g.op("Expand", t, shape)  # (B, T, K, G, D)
        repeated.append(g.op("Reshape", t, g.const([0, 0, n * d])))  # (B, T, N D)
    inputs = [g.op("Reshape", q, g.const([0, 0, n * d])), *repeated, ""]
    if layer_type == SLIDING:
        inputs += ["", masks.window_bias]  # (B, 1, T, T), padded keys included
    else:
        inputs += [masks.key_mask]  # (B, T) int32
    return g.op(
        "MultiHeadAttention", *inputs, domain=MS_DOMAIN, num_heads=n, scale=cfg.scale
    )  # (B, T, N D)


def skip_rms_norm(
    g: GraphBuilder, x: str, skip: str, gamma: F32, eps: float, name: str, fused: bool
) -> tuple[str, str]:
    """(RMSNorm(x + skip), x + skip): the residual step of a pre-norm block."""
    if fused:
        outs = g.op_multi(
            "SkipSimplifiedLayerNormalization",
            x,
            skip,
            g.weight(f"{name}.weight", gamma),
            domain=MS_DOMAIN,
            outputs=4,
            epsilon=float(eps),
        )
        return outs[0], outs[3]
    total = g.op("Add", x, skip)
    return layers.rms_norm(g, total, gamma, eps, name), total


def mlp(g: GraphBuilder, x: str, w: LayerWeights, cfg: DecoderConfig, name: str) -> str:
    """down(act(gate(x)) * up(x)), before the down bias: (B, T, H)."""
    gate_up = g.op("MatMul", x, g.weight(f"{name}.gate_up_weight", w.w_gate_up))  # (B, T, 2I)
    if w.b_gate_up is not None:
        gate_up = g.op("Add", gate_up, g.weight(f"{name}.gate_up_bias", w.b_gate_up))
    inter = cfg.intermediate
    gate, up = g.op_multi("Split", gate_up, g.const([inter, inter]), axis=-1, outputs=2)
    act = layers.activation(g, gate, None, cfg.act, f"{name}.act", fused=False)
    out = g.op("MatMul", g.op("Mul", act, up), g.weight(f"{name}.down_weight", w.w_down))
    if w.b_down is not None:
        out = g.op("Add", out, g.weight(f"{name}.down_bias", w.b_down))
    return out


@dataclass
class Decoder:
    hidden_state: str  # (B, T, H), after the final norm
    word_embeddings: F32  # (V, H), for tied LM heads
    cfg: DecoderConfig


def build_decoder(
    g: GraphBuilder,
    store: WeightStore,
    cfg: DecoderConfig,
    fused: bool,
    input_ids: str,
    attention_mask: str,
) -> Decoder:
    h = cfg.hidden
    word = store.take("embed_tokens.weight", (cfg.vocab, h))
    x = g.op("Gather", g.weight("embed_tokens", word), input_ids)  # (B, T, H)
    masks = masks_for(g, cfg, attention_mask, fused_attention(cfg, fused))
    cos_np, sin_np = rotary.cos_sin_tables(cfg.inv_freq, cfg.max_positions)  # (P, d)
    cos, sin = rotary.prefix_tables(g, cos_np, sin_np, input_ids, "rope")  # (T, d)
    half = cfg.rotary_dim // 2
    cos_half = sin_half = ""
    if fused_attention(cfg, fused) and _fused_rotary(cfg):
        # GroupQueryAttention's caches hold each frequency once: (P, d / 2)
        cos_half = g.weight("rope.cos_half", np.ascontiguousarray(cos_np[:, :half]))
        sin_half = g.weight("rope.sin_half", np.ascontiguousarray(sin_np[:, :half]))
    tables = (cos, sin, cos_half, sin_half)
    residual = x
    pending: str | None = None  # the last block's output, not yet added to the residual
    for i in range(cfg.layers):
        w = take_layer(store, cfg, i)
        name = f"layer{i}"
        if pending is None:
            normed = layers.rms_norm(g, residual, w.ln1, cfg.eps, f"{name}.ln1")
        else:
            normed, residual = skip_rms_norm(
                g, pending, residual, w.ln1, cfg.eps, f"{name}.ln1", fused
            )
        attn = attention(g, normed, w, cfg, cfg.layer_types[i], masks, tables, name, fused)
        attn = g.op("MatMul", attn, g.weight(f"{name}.o_weight", w.w_o))
        if w.b_o is not None:
            attn = g.op("Add", attn, g.weight(f"{name}.o_bias", w.b_o))
        normed, residual = skip_rms_norm(g, attn, residual, w.ln2, cfg.eps, f"{name}.ln2", fused)
        pending = mlp(g, normed, w, cfg, f"{name}.mlp")
        del w  # the layer's arrays are in the graph (or its external data file) now
    final = store.take("norm.weight", (h,))
    if pending is None:
        out = layers.rms_norm(g, residual, final, cfg.eps, "norm")
    else:
        out, _ = skip_rms_norm(g, pending, residual, final, cfg.eps, "norm", fused)
    return Decoder(hidden_state=out, word_embeddings=word, cfg=cfg)


def last_token(g: GraphBuilder, hidden: str, attention_mask: str) -> str:
    """(B, T, H) -> (B, H): each row's last real token (rows are right-padded)."""
    lengths = g.op("ReduceSum", attention_mask, g.const([1]), keepdims=1)  # (B, 1)
    last = g.op("Sub", lengths, g.const(1))  # (B, 1)
    return g.op("GatherND", hidden, last, batch_dims=1)  # (B, H)


def _projection(g: GraphBuilder, store: WeightStore, dec: Decoder) -> str:
    """(B, T, H) -> (B, T, P): the embedder's bias-free projection of every token, before
    pooling (voyage-4-nano), as TEI applies it."""
    shape = store.shape(PROJECTION)
    if len(shape) != 2 or shape[1] != dec.cfg.hidden:
        raise WeightMappingError(
            f"tensor {PROJECTION!r} has shape {shape}, expected (out, {dec.cfg.hidden})"
        )
    return layers.linear(g, dec.hidden_state, store.take(PROJECTION, shape), None, "projection")


def _yes_no_logit(
    g: GraphBuilder, store: WeightStore, dec: Decoder, pooled: str, token_ids: tuple[int, int]
) -> str:
    """(B, H) -> (B, 1): lm_head logit of "yes" minus that of "no"."""
    h, vocab = dec.cfg.hidden, dec.cfg.vocab
    for token in token_ids:
        if not 0 <= token < vocab:
            raise WeightMappingError(f"token id {token} is outside the vocabulary ({vocab})")
    if "lm_head.weight" in store:
        lm_head = store.take("lm_head.weight", (vocab, h))
    else:  # tied: the LM head is the embedding table
        lm_head = dec.word_embeddings
    rows = np.ascontiguousarray(lm_head[list(token_ids)].T)  # (H, 2): [yes | no]
    logits = g.op("MatMul", pooled, g.weight("lm_head.yes_no", rows))  # (B, 2)
    yes, no = g.op_multi("Split", logits, g.const([1, 1]), axis=-1, outputs=2)
    return g.op("Sub", yes, no)  # (B, 1)


def build(ctx: ExportContext) -> GraphOutput:
    """The graph for ``ctx.head`` on a qwen2 / qwen3 / mistral / llama checkpoint."""
    cfg = DecoderConfig.from_config(ctx.config, ctx.model_type)
    store = WeightStore(ctx.weight_files, strip_prefixes=PREFIXES)
    g = ctx.g
    dec = build_decoder(g, store, cfg, ctx.fused, ctx.input_ids, ctx.attention_mask)
    if ctx.head is Head.BASE:
        store.ignore("lm_head.")  # an embedder runs the bare decoder
        hidden, width = dec.hidden_state, cfg.hidden
        if PROJECTION in store:
            hidden, width = _projection(g, store, dec), store.shape(PROJECTION)[0]
        out = GraphOutput(hidden, OutputName.LAST_HIDDEN_STATE, ["batch", "sequence", width])
    elif ctx.head is Head.CLASSIFIER:
        # *ForSequenceClassification: score (no bias) on the last real token
        pooled = last_token(g, dec.hidden_state, ctx.attention_mask)
        shape = store.shape("score.weight")
        if len(shape) != 2 or shape[1] != cfg.hidden:
            raise WeightMappingError(
                f"tensor 'score.weight' has shape {shape}, expected (labels, {cfg.hidden})"
            )
        logits = layers.linear(g, pooled, store.take("score.weight", shape), None, "score")
        out = GraphOutput(logits, OutputName.LOGITS, ["batch", shape[0]])
    elif ctx.head is Head.YES_NO_LOGIT:
        token_ids = ctx.yes_no_token_ids
        if token_ids is None:  # they come from the tokenizer, which the caller reads
            raise UnsupportedModelError("a yes/no re-ranker graph needs the ids of 'yes' and 'no'")
        pooled = last_token(g, dec.hidden_state, ctx.attention_mask)
        logit = _yes_no_logit(g, store, dec, pooled, token_ids)
        store.ignore("lm_head.")  # the other rows of the LM head are never scored
        out = GraphOutput(logit, OutputName.LOGITS, ["batch", 1])
    else:
        raise UnsupportedModelError(
            f"the {ctx.head.value} head is not available for {ctx.model_type} models"
        )
    store.finish()
    return out
