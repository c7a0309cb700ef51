"""Tiny random Gemma3 text models (EmbeddingGemma's architecture) saved as safetensors.

Seeded; norms perturbed away from their zero init so that a norm taken as w instead of
(1 + w), or skipped, shows. Four layers (sliding, sliding, global, sliding), grouped-query
attention, a head_dim that is not hidden / heads, a query_pre_attn_scalar that is not the
head_dim, RoPE bases far apart and a window shorter than the test rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.tiny_decoders import MAX_POS, VOCAB, _perturb

WINDOW = 6  # bidirectional: keys within 3 positions


def gemma3_config_kwargs(vocab: int = VOCAB, **extra: Any) -> dict[str, Any]:
    return {
        "vocab_size": vocab,
        "hidden_size": 64,
        "intermediate_size": 96,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 32,
        "query_pre_attn_scalar": 24,
        "max_position_embeddings": MAX_POS,
        "rms_norm_eps": 1e-6,
        "hidden_activation": "gelu_pytorch_tanh",
        "sliding_window": WINDOW,
        "layer_types": [
            "sliding_attention",
            "sliding_attention",
            "full_attention",
            "sliding_attention",
        ],
        "rope_parameters": {
            "full_attention": {"rope_type": "default", "rope_theta": 1000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10.0},
        },
        "use_bidirectional_attention": True,
        "pad_token_id": 0,
        "initializer_range": 0.1,
    } | extra


def make_gemma3(out_dir: Path, *, seed: int = 0, vocab: int = VOCAB, **extra: Any) -> Any:
    """Build, perturb and save a Gemma3TextModel; returns it reloaded from ``out_dir``, so
    that the reference reads the saved config (its window) as any user's load would."""
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.Gemma3TextConfig(**gemma3_config_kwargs(vocab, **extra))
    config._attn_implementation = "eager"
    model = transformers.Gemma3TextModel(config).eval()
    _perturb(model, seed)
    model.save_pretrained(out_dir)
    reloaded = transformers.Gemma3TextModel.from_pretrained(
        out_dir, dtype=torch.float32, attn_implementation="eager"
    )
    return reloaded.eval()
