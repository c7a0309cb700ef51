"""What tei-ort knows about a model once it has read its files (no weights loaded)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tei_ort.exporters.head_kind import Head
from tei_ort.model.late_config import LateInteraction

__all__ = ["DenseLayer", "Head", "ModelInfo", "ModelKind", "Pooling"]


class ModelKind(str, enum.Enum):
    EMBEDDING = "embedding"
    CLASSIFIER = "classifier"
    RERANKER = "reranker"


class Pooling(str, enum.Enum):
    CLS = "cls"
    MEAN = "mean"
    SPLADE = "splade"
    LAST_TOKEN = "last_token"


@dataclass(frozen=True)
class DenseLayer:
    """A sentence-transformers Dense module applied after pooling."""

    path: Path
    in_features: int
    out_features: int
    bias: bool
    activation: str  # e.g. "torch.nn.modules.linear.Identity", "torch.nn.modules.activation.Tanh"


@dataclass(frozen=True)
class ModelInfo:
    model_id: str  # as the user named it (hub id or path)
    path: Path  # local directory holding config.json
    revision: str | None  # hub commit sha, when resolved through the hub
    config: dict[str, Any]  # config.json as read
    model_type: str  # config["model_type"], lower-case
    architectures: tuple[str, ...]
    kind: ModelKind
    head: Head
    pooling: Pooling | None  # None for classifiers and rerankers
    id2label: dict[int, str]
    max_input_length: int
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None  # from config_sentence_transformers.json
    dense_layers: tuple[DenseLayer, ...] = ()
    hidden_size: int = 0
    uses_token_type_ids: bool = True
    weight_files: tuple[Path, ...] = ()  # *.safetensors, shards in order
    # Head.YES_NO_LOGIT only: the tokenizer's ids of "yes" and "no", and the name of the
    # template that turns a (query, document) pair into the model's prompt
    yes_no_token_ids: tuple[int, int] | None = None
    rerank_template: str | None = None
    # ColBERT / BGE-M3: how queries and documents become token vectors (model.late_config)
    late_interaction: LateInteraction | None = None

    @property
    def label2id(self) -> dict[str, int]:
        return {label: idx for idx, label in self.id2label.items()}
