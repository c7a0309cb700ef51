"""JinaBERT v2 (jinaai/jina-embeddings-v2-*-en, remote code jina-bert-implementation).

A post-LayerNorm BERT with no position table: symmetric ALiBi (-slope_h * |i - j|) is
added to the attention scores, and the MLP is a GLU whose FIRST half is the gate:
``mlp.layernorm(x + mlp.wo(act(g[..., :I]) * g[..., I:]))`` with g = mlp.gated_layers(x).

jina-embeddings-v2-base-code uses another implementation (jina-bert-v2-qk-post-norm):
LayerNorms on q and k, and an MLP whose tensor names (``up_gated_layer``, ``down_layer``)
say neither which half is the gate nor where its norms sit. It is refused by name.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from tei_ort.exporters import blocks, heads, layers
from tei_ort.exporters.bert import Encoder, EncoderConfig
from tei_ort.exporters.errors import UnsupportedModelError
from tei_ort.exporters.export import ExportContext, GraphOutput
from tei_ort.exporters.graph import GraphBuilder
from tei_ort.exporters.weights import WeightStore

F32 = NDArray[np.float32]

# feed_forward_type -> the activation JinaBertGLUMLP applies to the gate half
_GLU_ACTIVATIONS = {"geglu": "gelu", "reglu": "relu"}


def _refuse_qk_post_norm(config: dict[str, Any], store: WeightStore) -> None:
    auto_map = config.get("auto_map") or {}
    refs = [str(v) for v in auto_map.values()] if isinstance(auto_map, dict) else []
    refs.append(str(config.get("_name_or_path", "")))
    marked = any("qk-post-norm" in ref.lower() for ref in refs)
    if marked or any(".layer_norm_q." in name for name in store.names()):
        raise UnsupportedModelError(
            "JinaBERT with QK post-norm (jinaai/jina-bert-v2-qk-post-norm, as used by "
            "jina-embeddings-v2-base-code) is not supported: its MLP tensor names do not tell "
            "which half is the gate"
        )


def _config(config: dict[str, Any]) -> tuple[EncoderConfig, str]:
    position_type = config.get("position_embedding_type", "alibi")
    if position_type != "alibi":
        raise UnsupportedModelError(
            f"JinaBERT position_embedding_type {position_type!r} is not supported (only 'alibi')"
        )
    ff_type = str(config.get("feed_forward_type", "original"))
    if ff_type not in _GLU_ACTIVATIONS:
        raise UnsupportedModelError(
            f"JinaBERT feed_forward_type {ff_type!r} is not supported "
            f"(only {', '.join(sorted(_GLU_ACTIVATIONS))})"
        )
    try:
        cfg = EncoderConfig(
            hidden=int(config["hidden_size"]),
            heads=int(config["num_attention_heads"]),
            layers=int(config["num_hidden_layers"]),
            intermediate=int(config["intermediate_size"]),
            act=_GLU_ACTIVATIONS[ff_type],
            eps=float(config.get("layer_norm_eps", 1e-12)),
            vocab=int(config["vocab_size"]),
            max_positions=int(config.get("max_position_embeddings", 8192)),
            type_vocab=int(config.get("type_vocab_size", 2)),
            pad_id=int(config.get("pad_token_id") or 0),
        )
    except KeyError as exc:
        raise UnsupportedModelError(f"config.json lacks {exc.args[0]!r}") from exc
    return cfg, ff_type


def _embeddings(
    g: GraphBuilder, store: WeightStore, cfg: EncoderConfig, input_ids: str
) -> tuple[str, F32]:
    h = cfg.hidden
    word = store.take("embeddings.word_embeddings.weight", (cfg.vocab, h))
    x = g.op("Gather", g.weight("embeddings.word", word), input_ids)  # (B, T, H)
    x = blocks.add_token_types(g, store, x, cfg.type_vocab, h)
    gamma = store.take("embeddings.LayerNorm.weight", (h,))
    beta = store.take("embeddings.LayerNorm.bias", (h,))
    return layers.layer_norm(g, x, gamma, beta, cfg.eps, "embeddings.ln"), word


def build_encoder(
    g: GraphBuilder,
    store: WeightStore,
    config: dict[str, Any],
    fused: bool,
    input_ids: str,
    attention_mask: str,
) -> Encoder:
    _refuse_qk_post_norm(config, store)
    cfg, _ = _config(config)
    h, inter = cfg.hidden, cfg.intermediate
    if h % cfg.heads:
        raise UnsupportedModelError(f"hidden size {h} is not divisible by {cfg.heads} heads")
    x, word = _embeddings(g, store, cfg, input_ids)
    alibi = layers.alibi_bias(g, layers.alibi_slopes(cfg.heads), x, "alibi")  # (1, N, T, T)
    mask = g.op("Cast", attention_mask, to=6) if fused else layers.additive_mask(g, attention_mask)
    for i in range(cfg.layers):
        p, name = f"encoder.layer.{i}.", f"layer{i}"
        w_qkv, b_qkv = blocks.packed_qkv(
            store, [p + f"attention.self.{n}" for n in ("query", "key", "value")], h
        )
        attn = layers.self_attention(
            g, x, w_qkv, b_qkv, cfg.heads, mask, name + ".attn", fused, alibi
        )
        x = blocks.project_add_norm(
            g,
            store,
            attn,
            x,
            projection=p + "attention.output.dense",
            norm=p + "attention.output.LayerNorm",
            in_features=h,
            hidden=h,
            eps=cfg.eps,
            name=name + ".out",
            fused=fused,
        )
        packed = store.take(p + "mlp.gated_layers.weight", (2 * inter, h))
        # first half gated (activated), second half not
        up = layers.gated_mlp(g, x, packed[:inter], packed[inter:], cfg.act, name + ".mlp", fused)
        x = blocks.project_add_norm(
            g,
            store,
            up,
            x,
            projection=p + "mlp.wo",
            norm=p + "mlp.layernorm",
            in_features=inter,
            hidden=h,
            eps=cfg.eps,
            name=name + ".down",
            fused=fused,
        )
    return Encoder(hidden_state=x, word_embeddings=word, cfg=cfg)


def build(ctx: ExportContext) -> GraphOutput:
    """Hidden states, or JinaBertForSequenceClassification logits (BERT's pooler + linear)."""
    store = WeightStore(ctx.weight_files, strip_prefixes=("bert.",))
    g = ctx.g
    enc = build_encoder(g, store, ctx.config, ctx.fused, ctx.input_ids, ctx.attention_mask)
    # JinaBertModel builds a pooler; JinaBertForMaskedLM checkpoints carry the MLM head
    return heads.encoder_output(
        ctx,
        store,
        enc,
        layout="bert",
        unused_by_embeddings=("pooler.", "cls."),
        no_splade="JinaBERT has no SPLADE (masked-LM) head to serve",
    )
