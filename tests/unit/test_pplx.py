"""pplx-embed's pooled quantization and what it accepts."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tei_ort.errors import UnsupportedModelError
from tei_ort.model.info import Head, ModelInfo, ModelKind, Pooling
from tei_ort.model.pplx import MODEL_TYPE, int8_scale, pooled_transform

INFO = ModelInfo(
    model_id="m",
    path=Path("/m"),
    revision=None,
    config={},
    model_type=MODEL_TYPE,
    architectures=(),
    kind=ModelKind.EMBEDDING,
    head=Head.BASE,
    pooling=Pooling.MEAN,
    id2label={},
    max_input_length=512,
)


def test_int8_scale() -> None:
    pooled = np.array([[0.0, 0.004, 0.5, -3.0, 100.0]], np.float32)
    expected = np.round(127 * np.tanh(pooled.astype(np.float64)))
    np.testing.assert_array_equal(int8_scale(pooled), expected)


def test_quantize_runs_before_dense() -> None:
    transform = pooled_transform(INFO, lambda x: x * 2)
    assert transform is not None
    pooled = np.array([[0.3, -0.2]], np.float32)
    np.testing.assert_array_equal(transform(pooled), 2 * int8_scale(pooled))


def test_other_models_keep_their_dense() -> None:
    def dense(x: np.ndarray) -> np.ndarray:
        return x

    assert pooled_transform(replace(INFO, model_type="qwen3"), dense) is dense
    assert pooled_transform(replace(INFO, model_type="qwen3"), None) is None


def test_mean_pooling_only() -> None:
    with pytest.raises(UnsupportedModelError, match="mean pooling only"):
        pooled_transform(replace(INFO, pooling=Pooling.CLS), None)
