"""A tiny BERT sequence classifier written with numpy (no torch): random weights under the
names transformers saves, MiniLM's tokenizer files, so the real loader can serve it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from tests.support.app import MINILM_DIR

HIDDEN, LAYERS, HEADS, FFN, VOCAB, POSITIONS = 32, 2, 4, 64, 30522, 128
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)


def make_classifier(out_dir: Path, num_labels: int = 1, seed: int = 0) -> Path:
    """``BertForSequenceClassification`` with ``num_labels`` labels (1: a re-ranker)."""
    rng = np.random.default_rng(seed)

    def tensor(*shape: int, scale: float = 0.05, center: float = 0.0) -> np.ndarray:
        return (center + scale * rng.standard_normal(shape)).astype(np.float32)

    weights = {
        "bert.embeddings.word_embeddings.weight": tensor(VOCAB, HIDDEN, scale=0.5),
        "bert.embeddings.position_embeddings.weight": tensor(POSITIONS, HIDDEN, scale=0.1),
        "bert.embeddings.token_type_embeddings.weight": tensor(2, HIDDEN, scale=0.1),
        "bert.embeddings.LayerNorm.weight": tensor(HIDDEN, scale=0.1, center=1.0),
        "bert.embeddings.LayerNorm.bias": tensor(HIDDEN),
        "bert.pooler.dense.weight": tensor(HIDDEN, HIDDEN, scale=0.3),
        "bert.pooler.dense.bias": tensor(HIDDEN),
        "classifier.weight": tensor(num_labels, HIDDEN, scale=1.0),
        "classifier.bias": tensor(num_labels),
    }
    for layer in range(LAYERS):
        prefix = f"bert.encoder.layer.{layer}"
        for name in ("query", "key", "value"):
            weights[f"{prefix}.attention.self.{name}.weight"] = tensor(HIDDEN, HIDDEN, scale=0.3)
            weights[f"{prefix}.attention.self.{name}.bias"] = tensor(HIDDEN)
        weights[f"{prefix}.attention.output.dense.weight"] = tensor(HIDDEN, HIDDEN, scale=0.3)
        weights[f"{prefix}.attention.output.dense.bias"] = tensor(HIDDEN)
        weights[f"{prefix}.attention.output.LayerNorm.weight"] = tensor(HIDDEN, center=1.0)
        weights[f"{prefix}.attention.output.LayerNorm.bias"] = tensor(HIDDEN)
        weights[f"{prefix}.intermediate.dense.weight"] = tensor(FFN, HIDDEN, scale=0.3)
        weights[f"{prefix}.intermediate.dense.bias"] = tensor(FFN)
        weights[f"{prefix}.output.dense.weight"] = tensor(HIDDEN, FFN, scale=0.3)
        weights[f"{prefix}.output.dense.bias"] = tensor(HIDDEN)
        weights[f"{prefix}.output.LayerNorm.weight"] = tensor(HIDDEN, center=1.0)
        weights[f"{prefix}.output.LayerNorm.bias"] = tensor(HIDDEN)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(out_dir / "model.safetensors"))
    labels = {str(i): f"LABEL_{i}" for i in range(num_labels)}
    config = {
        "architectures": ["BertForSequenceClassification"],
        "model_type": "bert",
        "vocab_size": VOCAB,
        "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "intermediate_size": FFN,
        "hidden_act": "gelu",
        "max_position_embeddings": POSITIONS,
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
        "id2label": labels,
        "label2id": {v: int(k) for k, v in labels.items()},
    }
    (out_dir / "config.json").write_text(json.dumps(config))
    for name in TOKENIZER_FILES:
        shutil.copy(MINILM_DIR / name, out_dir / name)
    return out_dir
