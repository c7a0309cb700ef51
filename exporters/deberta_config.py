"""What a DeBERTa-v2/v3 config.json says, and its relative-position table (numpy)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tei_ort.exporters import layers
from tei_ort.exporters.config_sizes import read_sizes
from tei_ort.exporters.errors import UnsupportedModelError

I64 = NDArray[np.int64]

CONV_ACTIVATIONS = ("tanh", "gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu")


@dataclass(frozen=True)
class DebertaConfig:
    hidden: int
    heads: int
    head_size: int
    layers: int
    intermediate: int
    act: str
    eps: float
    vocab: int
    embedding_size: int
    max_positions: int
    type_vocab: int
    position_biased_input: bool
    relative_attention: bool
    c2p: bool
    p2c: bool
    span: int  # relative embeddings cover distances [-span, span)
    buckets: int  # > 0: log buckets
    max_relative: int
    share_att_key: bool
    norm_rel_ebd: bool
    conv_kernel: int
    conv_groups: int
    conv_act: str
    pooler_size: int
    pooler_act: str

    @property
    def all_head(self) -> int:
        return self.heads * self.head_size

    @property
    def scale(self) -> float:
        """sqrt(head_size * factor) as transformers computes it, in float32."""
        factor = 1 + int(self.c2p) + int(self.p2c)
        return float(np.sqrt(np.float32(self.head_size * factor)))

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DebertaConfig:
        sizes = read_sizes(config)
        hidden, heads, n_layers = sizes.hidden, sizes.heads, sizes.layers
        intermediate, vocab = sizes.intermediate, sizes.vocab
        head_size = int(config.get("attention_head_size") or hidden // heads)
        max_positions = int(config.get("max_position_embeddings", 512))
        pos_att = config.get("pos_att_type") or []
        if isinstance(pos_att, str):
            pos_att = [p.strip() for p in pos_att.lower().split("|") if p.strip()]
        unknown = sorted(set(pos_att) - {"c2p", "p2c"})
        if unknown:
            raise UnsupportedModelError(f"DeBERTa pos_att_type {unknown} is not supported")
        relative = bool(config.get("relative_attention", False))
        max_relative = int(config.get("max_relative_positions", -1))
        if max_relative < 1:
            max_relative = max_positions
        buckets = int(config.get("position_buckets", -1))
        norm_rel = [x.strip() for x in str(config.get("norm_rel_ebd") or "none").lower().split("|")]
        if set(norm_rel) - {"none", "layer_norm"}:
            raise UnsupportedModelError(f"DeBERTa norm_rel_ebd {norm_rel} is not supported")
        conv_act = str(config.get("conv_act", "tanh"))
        if conv_act not in CONV_ACTIVATIONS:
            raise UnsupportedModelError(f"DeBERTa conv_act {conv_act!r} is not supported")
        return cls(
            hidden=hidden,
            heads=heads,
            head_size=head_size,
            layers=n_layers,
            intermediate=intermediate,
            act=layers.check_activation(str(config.get("hidden_act", "gelu"))),
            eps=float(config.get("layer_norm_eps", 1e-7)),
            vocab=vocab,
            embedding_size=int(config.get("embedding_size") or hidden),
            max_positions=max_positions,
            type_vocab=int(config.get("type_vocab_size", 0)),
            position_biased_input=bool(config.get("position_biased_input", True)),
            relative_attention=relative,
            c2p="c2p" in pos_att,
            p2c="p2c" in pos_att,
            span=buckets if buckets > 0 else max_relative,
            buckets=buckets,
            max_relative=max_relative,
            share_att_key=bool(config.get("share_att_key", False)),
            norm_rel_ebd="layer_norm" in norm_rel,
            conv_kernel=int(config.get("conv_kernel_size", 0) or 0),
            conv_groups=int(config.get("conv_groups", 1) or 1),
            conv_act=conv_act,
            pooler_size=int(config.get("pooler_hidden_size") or hidden),
            pooler_act=layers.check_activation(str(config.get("pooler_hidden_act", "gelu"))),
        )


# --- relative positions ----------------------------------------------------------------------


def relative_positions(cfg: DebertaConfig, length: int) -> I64:
    """(L, L) bucketed i - j, rounded as transformers' make_log_bucket_position (float32)."""
    ids = np.arange(length, dtype=np.int64)
    rel = ids[:, None] - ids[None, :]  # (L, L)
    if cfg.buckets <= 0 or cfg.max_relative <= 0:
        return rel
    mid = cfg.buckets // 2
    sign = np.sign(rel)
    abs_pos = np.where((rel < mid) & (rel > -mid), mid - 1, np.abs(rel))
    ratio = (abs_pos.astype(np.float32) / np.float32(mid)).astype(np.float32)
    denominator = np.log(np.float32((cfg.max_relative - 1) / mid))
    log_pos = np.ceil(np.log(ratio) / denominator * np.float32(mid - 1)) + np.float32(mid)
    bucket = np.where(abs_pos <= mid, rel.astype(np.float32), log_pos * sign.astype(np.float32))
    return bucket.astype(np.int64)
