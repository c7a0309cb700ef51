"""Alibaba GTE "new" (model_type ``new``, remote code Alibaba-NLP/new-impl).

gte-base-en-v1.5, gte-large-en-v1.5, gte-multilingual-base and the
gte-multilingual-reranker-base classifier. A post-LayerNorm encoder with rotary
embeddings (rotate-half over the whole head) whose NTK scaling is applied whenever
``rope_scaling`` asks for it (the module builds its tables for max_positions * factor,
which always takes the scaled branch), a packed qkv projection, and a GLU MLP whose
SECOND half is the gate: ``down(up_gate[..., :I] * act(up_gate[..., I:]))``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from tei_ort.exporters import blocks, heads, layers, rotary
from tei_ort.exporters.bert import Encoder, EncoderConfig
from tei_ort.exporters.errors import UnsupportedModelError
from tei_ort.exporters.export import ExportContext, GraphOutput
from tei_ort.exporters.graph import GraphBuilder
from tei_ort.exporters.weights import WeightStore

F32 = NDArray[np.float32]


def _check_options(config: dict[str, Any]) -> None:
    position_type = config.get("position_embedding_type", "rope")
    if position_type != "rope":
        raise UnsupportedModelError(
            f"GTE position_embedding_type {position_type!r} is not supported (only 'rope')"
        )
    norm_type = config.get("layer_norm_type", "layer_norm")
    if norm_type != "layer_norm":
        raise UnsupportedModelError(
            f"GTE layer_norm_type {norm_type!r} is not supported (only 'layer_norm')"
        )
    if config.get("logn_attention_scale"):
        raise UnsupportedModelError("GTE logn_attention_scale=true is not supported")


def _inv_freq(config: dict[str, Any], head_dim: int, max_positions: int) -> tuple[F32, int]:
    """The inverse frequencies and the table length the reference module builds."""
    base = float(config.get("rope_theta", 10000.0))
    scaling = config.get("rope_scaling")
    if scaling is None:
        return rotary.default_inv_freq(head_dim, base), max_positions
    if not isinstance(scaling, dict) or scaling.get("type") != "ntk":
        raise UnsupportedModelError(f"GTE rope_scaling {scaling!r} is not supported (only ntk)")
    if scaling.get("mixed_b") is not None:
        raise UnsupportedModelError("GTE rope_scaling with mixed_b (mixed NTK) is not supported")
    factor = float(scaling["factor"])
    cached = int(max_positions * factor)
    if cached <= max_positions:  # the module only rescales past max_position_embeddings
        return rotary.default_inv_freq(head_dim, base), max_positions
    return rotary.ntk_inv_freq(head_dim, base, factor), cached


def _config(config: dict[str, Any]) -> EncoderConfig:
    _check_options(config)
    try:
        return EncoderConfig(
            hidden=int(config["hidden_size"]),
            heads=int(config["num_attention_heads"]),
            layers=int(config["num_hidden_layers"]),
            intermediate=int(config["intermediate_size"]),
            act=layers.check_activation(str(config.get("hidden_act", "gelu"))),
            eps=float(config.get("layer_norm_eps", 1e-12)),
            vocab=int(config["vocab_size"]),
            max_positions=int(config.get("max_position_embeddings", 512)),
            type_vocab=int(config.get("type_vocab_size") or 0),
            pad_id=int(config.get("pad_token_id") or 0),
        )
    except KeyError as exc:
        raise UnsupportedModelError(f"config.json lacks {exc.args[0]!r}") from exc


def _embeddings(
    g: GraphBuilder, store: WeightStore, cfg: EncoderConfig, input_ids: str
) -> tuple[str, F32]:
    h = cfg.hidden
    word = store.take("embeddings.word_embeddings.weight", (cfg.vocab, h))
    x = g.op("Gather", g.weight("embeddings.word", word), input_ids)  # (B, T, H)
    x = blocks.add_token_types(g, store, x, cfg.type_vocab, h)  # gte-multilingual-base: 1
    gamma = store.take("embeddings.LayerNorm.weight", (h,))
    beta = store.take("embeddings.LayerNorm.bias", (h,))
    return layers.layer_norm(g, x, gamma, beta, cfg.eps, "embeddings.ln"), word


def _qkv(g: GraphBuilder, store: WeightStore, x: str, h: int, p: str, name: str) -> str:
    """(B, T, 3H) [q | k | v], from the packed projection or the three separate ones."""
    if p + "attention.qkv_proj.weight" in store:
        w = store.take(p + "attention.qkv_proj.weight", (3 * h, h))
        b = store.take(p + "attention.qkv_proj.bias", (3 * h,))
    else:  # pack_qkv = false
        w = np.concatenate([store.take(p + f"attention.{n}_proj.weight", (h, h)) for n in "qkv"])
        b = np.concatenate([store.take(p + f"attention.{n}_proj.bias", (h,)) for n in "qkv"])
    return layers.linear(g, x, w, b, name + ".qkv")


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
    head_dim = h // cfg.heads
    x, word = _embeddings(g, store, cfg, input_ids)
    inv_freq, table_rows = _inv_freq(config, head_dim, cfg.max_positions)
    tables = rotary.rotary_tables(g, inv_freq, table_rows, cfg.heads, head_dim, x, "rotary")
    mask = g.op("Cast", attention_mask, to=6) if fused else layers.additive_mask(g, attention_mask)
    for i in range(cfg.layers):
        p, name = f"encoder.layer.{i}.", f"layer{i}"
        q, k, v = g.op_multi(
            "Split", _qkv(g, store, x, h, p, name), g.const([h, h, h]), axis=-1, outputs=3
        )
        q, k = rotary.rotate(g, q, tables), rotary.rotate(g, k, tables)
        attn = layers.multi_head_attention(g, q, k, v, cfg.heads, head_dim, mask, fused)
        x = blocks.project_add_norm(
            g,
            store,
            attn,
            x,
            projection=p + "attention.o_proj",
            norm=p + "attn_ln",
            in_features=h,
            hidden=h,
            eps=cfg.eps,
            name=name + ".out",
            fused=fused,
        )
        packed = store.take(p + "mlp.up_gate_proj.weight", (2 * inter, h))
        # first half the value, second half the gate
        up = layers.gated_mlp(g, x, packed[inter:], packed[:inter], cfg.act, name + ".mlp", fused)
        x = blocks.project_add_norm(
            g,
            store,
            up,
            x,
            projection=p + "mlp.down_proj",
            norm=p + "mlp_ln",
            in_features=inter,
            hidden=h,
            eps=cfg.eps,
            name=name + ".down",
            fused=fused,
        )
    return Encoder(hidden_state=x, word_embeddings=word, cfg=cfg)


def build(ctx: ExportContext) -> GraphOutput:
    """Hidden states, or NewForSequenceClassification logits.

    The classifier is BERT's: ``classifier(tanh(pooler.dense(h[:, 0])))``, with the
    encoder saved under ``new.``.
    """
    store = WeightStore(ctx.weight_files, strip_prefixes=("new.",))
    g = ctx.g
    enc = build_encoder(g, store, ctx.config, ctx.fused, ctx.input_ids, ctx.attention_mask)
    return heads.encoder_output(
        ctx,
        store,
        enc,
        layout="bert",
        unused_by_embeddings=("pooler.",),  # NewModel(add_pooling_layer=True) checkpoints
        no_splade="GTE 'new' SPLADE (NewForMaskedLM) is not supported",
    )
