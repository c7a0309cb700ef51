"""BERT family encoders: bert, roberta, xlm-roberta, camembert, distilbert.

All five share one post-LayerNorm encoder; they differ in tensor names, position ids
(RoBERTa counts from ``pad_token_id + 1`` over non-pad tokens) and token types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tei_ort.exporters import blocks, layers
from tei_ort.exporters.errors import UnsupportedModelError
from tei_ort.exporters.export import ExportContext, GraphOutput
from tei_ort.exporters.graph import GraphBuilder
from tei_ort.exporters.weights import WeightStore

F32 = NDArray[np.float32]


@dataclass(frozen=True)
class Family:
    prefix: str  # what *For* checkpoints put before the encoder's names
    roberta_positions: bool
    distil_names: bool


FAMILIES: dict[str, Family] = {
    "bert": Family("bert.", roberta_positions=False, distil_names=False),
    "roberta": Family("roberta.", roberta_positions=True, distil_names=False),
    "xlm-roberta": Family("roberta.", roberta_positions=True, distil_names=False),
    "camembert": Family("roberta.", roberta_positions=True, distil_names=False),
    "distilbert": Family("distilbert.", roberta_positions=False, distil_names=True),
}


# masked-LM head tensors of the five families; unused when the model serves embeddings
MLM_PREFIXES = ("cls.", "lm_head.", "vocab_transform.", "vocab_layer_norm.", "vocab_projector.")


@dataclass(frozen=True)
class EncoderConfig:
    hidden: int
    heads: int
    layers: int
    intermediate: int
    act: str
    eps: float
    vocab: int
    max_positions: int
    type_vocab: int
    pad_id: int

    @classmethod
    def from_config(cls, config: dict[str, Any], family: Family) -> EncoderConfig:
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise UnsupportedModelError(
                f"position_embedding_type {config['position_embedding_type']!r} is not supported"
            )
        try:
            if family.distil_names:
                return cls(
                    hidden=int(config["dim"]),
                    heads=int(config["n_heads"]),
                    layers=int(config["n_layers"]),
                    intermediate=int(config["hidden_dim"]),
                    act=layers.check_activation(str(config.get("activation", "gelu"))),
                    eps=1e-12,  # fixed in DistilBERT's modeling code
                    vocab=int(config["vocab_size"]),
                    max_positions=int(config["max_position_embeddings"]),
                    type_vocab=0,
                    pad_id=int(config.get("pad_token_id") or 0),
                )
            return cls(
                hidden=int(config["hidden_size"]),
                heads=int(config["num_attention_heads"]),
                layers=int(config["num_hidden_layers"]),
                intermediate=int(config["intermediate_size"]),
                act=layers.check_activation(str(config.get("hidden_act", "gelu"))),
                eps=float(config.get("layer_norm_eps", 1e-12)),
                vocab=int(config["vocab_size"]),
                max_positions=int(config["max_position_embeddings"]),
                type_vocab=int(config.get("type_vocab_size", 2)),
                pad_id=int(config.get("pad_token_id") or 0),
            )
        except KeyError as exc:
            raise UnsupportedModelError(f"config.json lacks {exc.args[0]!r}") from exc


@dataclass
class LayerWeights:
    w_qkv: F32  # (H, 3H), columns [q | k | v]
    b_qkv: F32  # (3H,)
    w_out: F32  # (H, H) torch layout (out, in)
    b_out: F32
    ln1: tuple[F32, F32]
    w_up: F32  # (I, H)
    b_up: F32
    w_down: F32  # (H, I)
    b_down: F32
    ln2: tuple[F32, F32]


def _layer_names(family: Family, i: int) -> dict[str, str]:
    if family.distil_names:
        p = f"transformer.layer.{i}."
        return {
            "q": p + "attention.q_lin",
            "k": p + "attention.k_lin",
            "v": p + "attention.v_lin",
            "o": p + "attention.out_lin",
            "ln1": p + "sa_layer_norm",
            "up": p + "ffn.lin1",
            "down": p + "ffn.lin2",
            "ln2": p + "output_layer_norm",
        }
    p = f"encoder.layer.{i}."
    return {
        "q": p + "attention.self.query",
        "k": p + "attention.self.key",
        "v": p + "attention.self.value",
        "o": p + "attention.output.dense",
        "ln1": p + "attention.output.LayerNorm",
        "up": p + "intermediate.dense",
        "down": p + "output.dense",
        "ln2": p + "output.LayerNorm",
    }


def _take_layer(store: WeightStore, family: Family, cfg: EncoderConfig, i: int) -> LayerWeights:
    n = _layer_names(family, i)
    h, inter = cfg.hidden, cfg.intermediate
    qkv = [store.take(n[x] + ".weight", (h, h)) for x in ("q", "k", "v")]
    qkv_bias = [store.take(n[x] + ".bias", (h,)) for x in ("q", "k", "v")]
    return LayerWeights(
        w_qkv=np.concatenate([w.T for w in qkv], axis=1),  # (H, 3H)
        b_qkv=np.concatenate(qkv_bias),
        w_out=store.take(n["o"] + ".weight", (h, h)),
        b_out=store.take(n["o"] + ".bias", (h,)),
        ln1=(store.take(n["ln1"] + ".weight", (h,)), store.take(n["ln1"] + ".bias", (h,))),
        w_up=store.take(n["up"] + ".weight", (inter, h)),
        b_up=store.take(n["up"] + ".bias", (inter,)),
        w_down=store.take(n["down"] + ".weight", (h, inter)),
        b_down=store.take(n["down"] + ".bias", (h,)),
        ln2=(store.take(n["ln2"] + ".weight", (h,)), store.take(n["ln2"] + ".bias", (h,))),
    )


@dataclass
class Encoder:
    """The emitted encoder: its output and what heads need to reuse."""

    hidden_state: str  # (B, T, H)
    word_embeddings: F32  # (V, H), kept for tied MLM decoders
    cfg: EncoderConfig


def build_encoder(
    g: GraphBuilder,
    store: WeightStore,
    config: dict[str, Any],
    model_type: str,
    fused: bool,
    input_ids: str,
    attention_mask: str,
) -> Encoder:
    family = FAMILIES[model_type]
    cfg = EncoderConfig.from_config(config, family)
    h = cfg.hidden
    if h % cfg.heads:
        raise UnsupportedModelError(f"hidden size {h} is not divisible by {cfg.heads} heads")

    word = store.take("embeddings.word_embeddings.weight", (cfg.vocab, h))
    positions = store.take("embeddings.position_embeddings.weight", (cfg.max_positions, h))
    x = g.op("Gather", g.weight("embeddings.word", word), input_ids)  # (B, T, H)
    x = g.op("Add", x, _position_embeddings(g, positions, input_ids, cfg, family))
    x = blocks.add_token_types(g, store, x, cfg.type_vocab, h)
    ln = (
        store.take("embeddings.LayerNorm.weight", (h,)),
        store.take("embeddings.LayerNorm.bias", (h,)),
    )
    x = layers.layer_norm(g, x, ln[0], ln[1], cfg.eps, "embeddings.ln")

    # fused Attention takes the (B, T) int32 key mask; the plain one a (B, 1, 1, T) float bias
    mask = g.op("Cast", attention_mask, to=6) if fused else layers.additive_mask(g, attention_mask)
    for i in range(cfg.layers):
        w = _take_layer(store, family, cfg, i)
        name = f"layer{i}"
        attn = layers.self_attention(g, x, w.w_qkv, w.b_qkv, cfg.heads, mask, name + ".attn", fused)
        attn = g.op("MatMul", attn, g.weight(f"{name}.attn_out.weight_t", w.w_out.T.copy()))
        x = layers.skip_layer_norm(g, attn, x, w.b_out, *w.ln1, cfg.eps, name + ".ln1", fused)
        up = g.op("MatMul", x, g.weight(f"{name}.up.weight_t", w.w_up.T.copy()))  # (B, T, I)
        up = layers.activation(g, up, w.b_up, cfg.act, name + ".act", fused)
        down = g.op("MatMul", up, g.weight(f"{name}.down.weight_t", w.w_down.T.copy()))
        x = layers.skip_layer_norm(g, down, x, w.b_down, *w.ln2, cfg.eps, name + ".ln2", fused)
    return Encoder(hidden_state=x, word_embeddings=word, cfg=cfg)


def build(ctx: ExportContext) -> GraphOutput:
    """The graph for ``ctx.head``: hidden states, classifier logits or SPLADE vectors."""
    from tei_ort.exporters import heads

    family = FAMILIES[ctx.model_type]
    store = WeightStore(ctx.weight_files, strip_prefixes=(family.prefix,))
    g = ctx.g
    enc = build_encoder(
        g, store, ctx.config, ctx.model_type, ctx.fused, ctx.input_ids, ctx.attention_mask
    )
    # a pooler or an MLM head in the checkpoint is not part of an embedding model
    return heads.encoder_output(
        ctx,
        store,
        enc,
        layout=ctx.model_type,
        unused_by_embeddings=("pooler.", *MLM_PREFIXES, *ctx.unused_prefixes),
    )


def _position_embeddings(
    g: GraphBuilder, table: F32, input_ids: str, cfg: EncoderConfig, family: Family
) -> str:
    weights = g.weight("embeddings.position", table)
    if family.roberta_positions:
        # RoBERTa: position = pad_id + 1 + index among non-pad tokens; pad tokens get pad_id
        not_pad = g.op("Cast", g.op("Not", g.op("Equal", input_ids, g.const(cfg.pad_id))), to=7)
        cumsum = g.op("CumSum", not_pad, g.const(1))
        position_ids = g.op("Add", g.op("Mul", cumsum, not_pad), g.const(cfg.pad_id))
        return g.op("Gather", weights, position_ids)  # (B, T, H)
    seq_len = g.op("Gather", g.op("Shape", input_ids), g.const([1]))  # (1,)
    return g.op("Slice", weights, g.const([0]), seq_len, g.const([0]))  # (T, H)
