"""Hand-written model directories for the hub and inspection tests: JSON files and a tiny
safetensors file, no real weights."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

BERT_CONFIG: dict[str, Any] = {
    "architectures": ["BertModel"],
    "model_type": "bert",
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "vocab_size": 100,
    "pad_token_id": 0,
}


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def write_weights(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"w": np.zeros((1,), dtype=np.float32)}, str(path))
    return path


def pooling_config(mode: str | None) -> dict[str, Any]:
    """A 1_Pooling/config.json with ``pooling_mode_<mode>`` on (None: all off)."""
    keys = ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens", "lasttoken")
    config: dict[str, Any] = {"word_embedding_dimension": 32}
    config.update({f"pooling_mode_{key}": key == mode for key in keys})
    return config


def make_model(
    root: Path,
    config_overrides: dict[str, Any] | None = None,
    *,
    pooling: str | None = None,
    weights: bool = True,
) -> Path:
    """A BERT-like model directory: config.json, model.safetensors, optional 1_Pooling."""
    config = {**BERT_CONFIG, **(config_overrides or {})}
    write_json(root / "config.json", {k: v for k, v in config.items() if v is not None})
    if weights:
        write_weights(root / "model.safetensors")
    if pooling is not None:
        write_json(root / "1_Pooling" / "config.json", pooling_config(pooling))
    return root


def modules(*entries: tuple[str, str]) -> list[dict[str, Any]]:
    """A modules.json body from (type suffix, path) pairs."""
    return [
        {"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
        for i, (kind, path) in enumerate(entries)
    ]


def make_hub_cache(
    cache_dir: Path, repo_id: str, sha: str, *, ref: str = "main", files: dict[str, Any]
) -> Path:
    """The layout huggingface_hub keeps: models--org--name/{refs/<ref>,snapshots/<sha>/...}."""
    repo = cache_dir / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / ref).write_text(sha, encoding="utf-8")
    snapshot = repo / "snapshots" / sha
    for name, content in files.items():
        write_json(snapshot / name, content)
    return snapshot


def package_model_dir(package: str) -> Path:
    """``<package>/model`` of an installed model package, found without importing it."""
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations is not None
    return Path(next(iter(spec.submodule_search_locations))) / "model"
