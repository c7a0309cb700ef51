"""Dispatch: a model's config and checkpoint -> an ONNX graph for one head and variant."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx

from engines.base import OutputName
from exporters import bert, heads
from exporters.graph import FLOAT, INT64, GraphBuilder
from exporters.weights import WeightStore
from tei_ort.errors import UnsupportedModelError
from tei_ort.model_info import Head

# Bump when any builder changes the graphs it writes: it is part of the engine cache key.
EXPORTER_VERSION = "1"


class Variant(str, enum.Enum):
    """Which operator set the graph uses."""

    ORT = "ort"  # ONNX Runtime contrib operators (fused attention, skip layer norm, gelu)
    PLAIN = "plain"  # opset-17 operators only (TensorRT, any runtime)


SUPPORTED_MODEL_TYPES = tuple(bert.FAMILIES)


def export_onnx(
    config: dict[str, Any],
    weight_files: Sequence[Path],
    head: Head,
    variant: Variant = Variant.ORT,
) -> onnx.ModelProto:
    """Build the graph for ``head`` straight from the safetensors tensors."""
    model_type = str(config.get("model_type", "")).lower()
    if model_type not in bert.FAMILIES:
        raise UnsupportedModelError(
            f"model_type {model_type!r} is not supported; "
            f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    family = bert.FAMILIES[model_type]
    store = WeightStore(weight_files, strip_prefixes=(family.prefix,))
    g = GraphBuilder(f"tei_ort_{model_type}_{head.value}")
    input_ids = g.input("input_ids", INT64, ["batch", "sequence"])
    attention_mask = g.input("attention_mask", INT64, ["batch", "sequence"])
    enc = bert.build_encoder(
        g, store, config, model_type, variant is Variant.ORT, input_ids, attention_mask
    )

    if head is Head.BASE:
        # a pooler or an MLM head in the checkpoint is not part of an embedding model
        store.ignore("pooler.")
        _ignore_mlm(store)
        out, name = enc.hidden_state, OutputName.LAST_HIDDEN_STATE
        shape: list[int | str] = ["batch", "sequence", enc.cfg.hidden]
    elif head is Head.CLASSIFIER:
        out, name = heads.classifier(g, store, enc, model_type), OutputName.LOGITS
        shape = ["batch", "labels"]
    elif head is Head.SPLADE:
        store.ignore("pooler.")
        out, name = (
            heads.splade(g, store, enc, model_type, attention_mask),
            OutputName.SPARSE_EMBEDDING,
        )
        shape = ["batch", enc.cfg.vocab]
    else:  # pragma: no cover - exhaustive over Head
        raise UnsupportedModelError(f"head {head!r}")
    store.finish()
    g.op("Identity", out, name=name.value)
    g.output(name.value, FLOAT, shape)
    model = g.build(producer=f"tei-ort-exporter-{EXPORTER_VERSION}")
    onnx.checker.check_model(model, full_check=False)
    return model


def _ignore_mlm(store: WeightStore) -> None:
    for prefix in ("cls.", "lm_head.", "vocab_transform.", "vocab_layer_norm.", "vocab_projector."):
        store.ignore(prefix)
