"""A tiny random MPNet (transformers), saved as safetensors: the reference for its exporter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import transformers

from tests.support.tiny_models import VOCAB

# long enough that offsets reach the log-spaced buckets and their clamp (> 128)
MAX_POS = 160
HEAD_CLASSES = {
    "base": "MPNetModel",
    "classifier": "MPNetForSequenceClassification",
    "splade": "MPNetForMaskedLM",
}


def make_mpnet(head: str, out_dir: Path, seed: int = 0) -> Any:
    """A tiny MPNet with LayerNorms and biases perturbed (as tiny_models does), saved."""
    torch.manual_seed(seed)
    config = transformers.MPNetConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=MAX_POS,
        layer_norm_eps=1e-7,
        hidden_act="gelu",
        pad_token_id=1,
        num_labels=3,
    )
    model = getattr(transformers, HEAD_CLASSES[head])(config).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name:
                param.add_(torch.randn(param.shape, generator=generator) * 0.2)
            elif name.endswith("bias"):
                param.add_(torch.randn(param.shape, generator=generator) * 0.05)
            elif "relative_attention_bias" in name or name.startswith("classifier."):
                # the default init (std 0.02) is small: make the position bias matter, and
                # the logits depend on the encoder by more than rounding
                param.mul_(50.0)
    model.save_pretrained(out_dir)
    return model
