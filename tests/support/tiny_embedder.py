"""A tiny BERT embedding model (mean pooling) from the tiny classifier's weights: no torch,
MiniLM's tokenizer, loads through the real exporter and engine in a second."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.numpy import load_file, save_file

from tests.support.tiny_classifier import make_classifier


def make_embedder(out_dir: Path, seed: int = 0) -> Path:
    make_classifier(out_dir, num_labels=1, seed=seed)
    weights = load_file(str(out_dir / "model.safetensors"))
    kept = {k: v for k, v in weights.items() if not k.startswith(("classifier.", "bert.pooler."))}
    save_file(kept, str(out_dir / "model.safetensors"))
    config = json.loads((out_dir / "config.json").read_text())
    config["architectures"] = ["BertModel"]
    for key in ("id2label", "label2id"):
        config.pop(key)
    (out_dir / "config.json").write_text(json.dumps(config))
    (out_dir / "1_Pooling").mkdir(exist_ok=True)
    (out_dir / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True})
    )
    return out_dir
