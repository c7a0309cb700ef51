"""Tiny DeBERTa-v2 configurations covering the exporter's switches (see
test_export_deberta_v2.py): a v3-like one, a v2-xlarge-like one with a conv layer, and one
with c2p terms only."""

from __future__ import annotations

from typing import Any

from tests.support.tiny_decoders import VOCAB

COMMON: dict[str, Any] = {
    "vocab_size": VOCAB,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 48,
    "max_position_embeddings": 64,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-7,
    "pad_token_id": 0,
    "initializer_range": 0.2,
}
CONFIGS: dict[str, dict[str, Any]] = {
    "v3": {
        "relative_attention": True,
        "pos_att_type": ["p2c", "c2p"],
        "position_buckets": 8,  # log buckets from distance 4 on: the rows reach 23
        "max_relative_positions": -1,
        "share_att_key": True,
        "norm_rel_ebd": "layer_norm",
        "position_biased_input": False,
        "type_vocab_size": 0,
    },
    "v2-conv": {
        "relative_attention": True,
        "pos_att_type": "c2p|p2c",
        "position_buckets": -1,
        "max_relative_positions": 6,  # distances clipped at 6
        "share_att_key": False,
        "norm_rel_ebd": "none",
        "position_biased_input": True,
        "type_vocab_size": 2,
        "embedding_size": 24,
        "conv_kernel_size": 3,
        "conv_act": "gelu",
    },
    "c2p-only": {
        "relative_attention": True,
        "pos_att_type": ["c2p"],
        "position_buckets": 8,
        "share_att_key": True,
        "norm_rel_ebd": "layer_norm",
        "position_biased_input": False,
        "type_vocab_size": 0,
    },
}
