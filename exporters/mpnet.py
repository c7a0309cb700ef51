"""MPNet (sentence-transformers/all-mpnet-base-v2 and friends).

A post-LayerNorm BERT encoder with two twists: RoBERTa-style position ids (counted from
``padding_idx + 1`` over non-pad tokens, with ``padding_idx`` fixed at 1 by the modeling
code) and a T5-style relative position bias, bucketed once and shared by every layer,
added to the attention scores.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tei_ort.exporters import blocks, heads, layers
from tei_ort.exporters.bert import FAMILIES, Encoder, EncoderConfig
from tei_ort.exporters.errors import UnsupportedModelError
from tei_ort.exporters.export import ExportContext, GraphOutput
from tei_ort.exporters.graph import GraphBuilder
from tei_ort.exporters.weights import WeightStore

F32 = NDArray[np.float32]
I64 = NDArray[np.int64]

# MPNetEmbeddings hard-codes padding_idx = 1 whatever the config says
PADDING_IDX = 1
# MPNetEncoder.compute_position_bias always buckets with these (its defaults)
NUM_BUCKETS = 32
MAX_DISTANCE = 128


def relative_position_bucket(relative_position: I64) -> I64:
    """T5's bidirectional bucketing as MPNet computes it (float32 log, truncation).

    Half the buckets for keys before the query, half after; within each half, exact
    buckets for distances below 8 and log-spaced ones up to ``MAX_DISTANCE``.
    """
    half = NUM_BUCKETS // 2
    n = -relative_position
    ret = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    max_exact = half // 2
    # float32 throughout, as torch does it: the truncation at exact powers of two must match
    ratio = np.maximum(n, 1).astype(np.float32) / np.float32(max_exact)
    log_part = np.log(ratio) / np.float32(math.log(MAX_DISTANCE / max_exact))
    large = max_exact + (log_part * np.float32(half - max_exact)).astype(np.int64)
    large = np.minimum(large, half - 1)
    result: I64 = ret + np.where(n < max_exact, n, large)
    return result


def relative_bias_table(bias_weight: F32, max_positions: int) -> F32:
    """(2P - 1, N): the bias of every head for key offsets j - i = -(P-1) .. P-1."""
    offsets = np.arange(-(max_positions - 1), max_positions, dtype=np.int64)
    table: F32 = bias_weight[relative_position_bucket(offsets)].astype(np.float32)
    return table


def _relative_bias(g: GraphBuilder, table: F32, max_positions: int, like: str) -> str:
    """(1, N, T, T) bias for the batch's length T, read from the offset table."""
    seq_len = g.op("Gather", g.op("Shape", like), g.const(1))  # ()
    positions = g.op("Range", g.const(0), seq_len, g.const(1))  # (T,)
    offsets = g.op(
        "Sub",
        g.op("Unsqueeze", positions, g.const([0])),
        g.op("Unsqueeze", positions, g.const([1])),
    )  # (T, T): j - i
    index = g.op("Add", offsets, g.const(max_positions - 1))
    values = g.op("Gather", g.weight("encoder.relative_bias_table", table), index)  # (T, T, N)
    return g.op("Unsqueeze", g.op("Transpose", values, perm=[2, 0, 1]), g.const([0]))


def _config(config: dict[str, Any]) -> EncoderConfig:
    if "relative_attention_num_buckets" in config and (
        int(config["relative_attention_num_buckets"]) != NUM_BUCKETS
    ):
        # transformers builds a table of that size but always buckets into 32
        raise UnsupportedModelError(
            f"relative_attention_num_buckets {config['relative_attention_num_buckets']} is not "
            f"supported (MPNet's modeling code always uses {NUM_BUCKETS})"
        )
    cfg = EncoderConfig.from_config(config, FAMILIES["roberta"])
    return dataclasses.replace(cfg, type_vocab=0, pad_id=PADDING_IDX)


def _position_embeddings(g: GraphBuilder, table: F32, input_ids: str) -> str:
    # position = padding_idx + 1 + index among non-pad tokens; pad tokens get padding_idx
    not_pad = g.op("Cast", g.op("Not", g.op("Equal", input_ids, g.const(PADDING_IDX))), to=7)
    position_ids = g.op(
        "Add", g.op("Mul", g.op("CumSum", not_pad, g.const(1)), not_pad), g.const(PADDING_IDX)
    )
    return g.op("Gather", g.weight("embeddings.position", table), position_ids)  # (B, T, H)


def build_encoder(
    g: GraphBuilder,
    store: WeightStore,
    config: dict[str, Any],
    fused: bool,
    input_ids: str,
    attention_mask: str,
) -> Encoder:
    cfg = _config(config)
    h, inter = cfg.hidden, cfg.intermediate
    if h % cfg.heads:
        raise UnsupportedModelError(f"hidden size {h} is not divisible by {cfg.heads} heads")

    word = store.take("embeddings.word_embeddings.weight", (cfg.vocab, h))
    positions = store.take("embeddings.position_embeddings.weight", (cfg.max_positions, h))
    x = g.op("Gather", g.weight("embeddings.word", word), input_ids)  # (B, T, H)
    x = g.op("Add", x, _position_embeddings(g, positions, input_ids))
    x = layers.layer_norm(
        g,
        x,
        store.take("embeddings.LayerNorm.weight", (h,)),
        store.take("embeddings.LayerNorm.bias", (h,)),
        cfg.eps,
        "embeddings.ln",
    )

    bias_weight = store.take("encoder.relative_attention_bias.weight", (NUM_BUCKETS, cfg.heads))
    bias = _relative_bias(
        g, relative_bias_table(bias_weight, cfg.max_positions), cfg.max_positions, x
    )
    mask = g.op("Cast", attention_mask, to=6) if fused else layers.additive_mask(g, attention_mask)
    for i in range(cfg.layers):
        p, name = f"encoder.layer.{i}.", f"layer{i}"
        w_qkv, b_qkv = blocks.packed_qkv(store, [p + f"attention.attn.{n}" for n in "qkv"], h)
        attn = layers.self_attention(
            g, x, w_qkv, b_qkv, cfg.heads, mask, name + ".attn", fused, bias
        )
        x = blocks.project_add_norm(
            g,
            store,
            attn,
            x,
            projection=p + "attention.attn.o",
            norm=p + "attention.LayerNorm",
            in_features=h,
            hidden=h,
            eps=cfg.eps,
            name=name + ".out",
            fused=fused,
        )
        w_up = store.take(p + "intermediate.dense.weight", (inter, h))
        up = g.op("MatMul", x, g.weight(f"{name}.up.weight_t", w_up.T.copy()))  # (B, T, I)
        up = layers.activation(
            g,
            up,
            store.take(p + "intermediate.dense.bias", (inter,)),
            cfg.act,
            name + ".act",
            fused,
        )
        x = blocks.project_add_norm(
            g,
            store,
            up,
            x,
            projection=p + "output.dense",
            norm=p + "output.LayerNorm",
            in_features=inter,
            hidden=h,
            eps=cfg.eps,
            name=name + ".down",
            fused=fused,
        )
    return Encoder(hidden_state=x, word_embeddings=word, cfg=cfg)


def build(ctx: ExportContext) -> GraphOutput:
    """Hidden states, MPNetForSequenceClassification logits or MPNetForMaskedLM SPLADE."""
    store = WeightStore(ctx.weight_files, strip_prefixes=("mpnet.",))
    g = ctx.g
    enc = build_encoder(g, store, ctx.config, ctx.fused, ctx.input_ids, ctx.attention_mask)
    # MPNet's classification head and LM head have RoBERTa's structure and tensor names
    return heads.encoder_output(
        ctx, store, enc, layout="roberta", unused_by_embeddings=("pooler.", "lm_head.")
    )
