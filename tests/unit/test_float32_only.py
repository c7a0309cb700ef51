"""Gemma3 runs in float32 only, as in TEI: a GPU target's float16 default becomes float32,
and an explicit --dtype float16 is refused at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from tei_ort.errors import ConfigurationError
from tei_ort.exporters.export import Variant
from tei_ort.model.info import Head, ModelInfo, ModelKind, Pooling
from tei_ort.model.options import ModelOptions
from tei_ort.model.targets import EngineTarget, finalize_target

CUDA = EngineTarget(
    "onnx-cuda-sm90", "float16", Variant.ORT, ("CUDAExecutionProvider",), engine="ort-cuda"
)


def _info(model_type: str) -> ModelInfo:
    return ModelInfo(
        model_id="m",
        path=Path("/m"),
        revision=None,
        config={},
        model_type=model_type,
        architectures=(),
        kind=ModelKind.EMBEDDING,
        head=Head.BASE,
        pooling=Pooling.MEAN,
        id2label={},
        max_input_length=512,
    )


def test_gemma3_default_dtype_becomes_float32() -> None:
    target = finalize_target(CUDA, _info("gemma3_text"), ModelOptions(provider="cuda"))
    assert target.dtype == "float32"
    assert target.limits is not None  # still sized as a GPU target


def test_gemma3_explicit_float16_is_refused() -> None:
    options = ModelOptions(provider="cuda", dtype="float16")
    with pytest.raises(ConfigurationError, match="float32 only"):
        finalize_target(CUDA, _info("gemma3_text"), options)


def test_other_models_keep_float16() -> None:
    target = finalize_target(CUDA, _info("qwen3"), ModelOptions(provider="cuda"))
    assert target.dtype == "float16"
