"""The ModernBERT exporter against transformers' ModernBertModel / ...ForSequenceClassification.

The reference runs eager attention on the padded batch (transformers unpads only with
flash-attn). The rows are longer than the local window, so local layers mask for real.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from tei_ort.errors import WeightMappingError
from tei_ort.exporters.export import Variant, export_onnx
from tei_ort.model.info import Head, Pooling
from tei_ort.serving.pooling import pool
from tests.support.graphs import checkpoint_files
from tests.support.tiny_decoders import WINDOW, decoder_batch, make_modernbert

ATOL = 1e-4
MIN_COSINE = 0.99999


def _session(
    model_dir: Path, head: Head, variant: Variant, **overrides: Any
) -> ort.InferenceSession:
    config = json.loads((model_dir / "config.json").read_text()) | overrides
    graph = export_onnx(config, checkpoint_files(model_dir), head, variant)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(graph.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _reference(model: Any, batch: dict[str, np.ndarray]) -> Any:
    torch.set_num_threads(1)
    with torch.no_grad():
        return model(
            input_ids=torch.from_numpy(batch["input_ids"]),
            attention_mask=torch.from_numpy(batch["attention_mask"]),
        )


def _assert_close(ours: np.ndarray, ref: np.ndarray) -> None:
    assert np.abs(ours - ref).max() <= ATOL
    a, b = ours.reshape(ours.shape[0], -1), ref.reshape(ref.shape[0], -1)
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    assert cos.min() >= MIN_COSINE


CONFIGS = {
    "defaults": {},  # no biases, CLS pooling for the classifier
    "biases": {"norm_bias": True, "attention_bias": True, "mlp_bias": True},
}


@pytest.mark.parametrize("variant", list(Variant))
@pytest.mark.parametrize("config", list(CONFIGS))
def test_base_parity(tmp_path: Path, config: str, variant: Variant) -> None:
    model = make_modernbert("base", tmp_path, **CONFIGS[config])
    batch = decoder_batch()
    assert batch["attention_mask"].sum(axis=1).max() > 3 * WINDOW
    ours = _session(tmp_path, Head.BASE, variant).run(None, batch)[0]
    ref = _reference(model, batch).last_hidden_state.numpy()
    valid = batch["attention_mask"].astype(bool)
    _assert_close(ours[valid], ref[valid])
    mask = batch["attention_mask"]
    _assert_close(pool(ours, mask, Pooling.MEAN), pool(ref, mask, Pooling.MEAN))
    _assert_close(pool(ours, mask, Pooling.CLS), pool(ref, mask, Pooling.CLS))


@pytest.mark.parametrize("variant", list(Variant))
@pytest.mark.parametrize(
    "extra",
    [
        {"num_labels": 3},
        {"num_labels": 1, "classifier_pooling": "mean", "classifier_bias": True},
        {"num_labels": 2, "classifier_activation": "gelu_pytorch_tanh", "norm_bias": True},
    ],
)
def test_classifier_parity(tmp_path: Path, extra: dict[str, Any], variant: Variant) -> None:
    model = make_modernbert("classifier", tmp_path, **extra)
    batch = decoder_batch()
    ours = _session(tmp_path, Head.CLASSIFIER, variant).run(None, batch)[0]
    ref = _reference(model, batch).logits.numpy()
    assert ours.shape == ref.shape == (4, extra["num_labels"])
    _assert_close(ours, ref)


@pytest.mark.parametrize("variant", list(Variant))
def test_local_window_and_thetas_matter(tmp_path: Path, variant: Variant) -> None:
    """The same weights read with a global-only window or swapped thetas must differ."""
    model = make_modernbert("base", tmp_path)
    batch = decoder_batch()
    ref = _reference(model, batch).last_hidden_state.numpy()
    valid = batch["attention_mask"].astype(bool)
    for overrides in (
        {"local_attention": 1000},
        {
            "rope_parameters": {
                "full_attention": {"rope_type": "default", "rope_theta": 10000.0},
                "sliding_attention": {"rope_type": "default", "rope_theta": 160000.0},
            }
        },
    ):
        session = _session(tmp_path, Head.BASE, variant, **overrides)
        ours = session.run(None, batch)[0]
        assert np.abs(ours[valid] - ref[valid]).max() > 1e-3


def test_padding_changes_no_real_token(tmp_path: Path) -> None:
    make_modernbert("base", tmp_path)
    session = _session(tmp_path, Head.BASE, Variant.ORT)
    batch = decoder_batch()
    padded = session.run(None, batch)[0]
    for row, n in enumerate(batch["attention_mask"].sum(axis=1)):
        alone = {k: v[row : row + 1, :n] for k, v in batch.items()}
        np.testing.assert_allclose(padded[row, :n], session.run(None, alone)[0][0], atol=1e-5)


def test_original_config_keys(tmp_path: Path) -> None:
    """Hub configs predate layer_types / rope_parameters: the original keys decide."""
    model = make_modernbert("base", tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    for key in ("layer_types", "rope_parameters"):
        config.pop(key)
    config |= {"global_rope_theta": 160000.0, "local_rope_theta": 10000.0}
    (tmp_path / "config.json").write_text(json.dumps(config))
    batch = decoder_batch()
    ours = _session(tmp_path, Head.BASE, Variant.ORT).run(None, batch)[0]
    ref = _reference(model, batch).last_hidden_state.numpy()
    valid = batch["attention_mask"].astype(bool)
    _assert_close(ours[valid], ref[valid])


def test_masked_lm_checkpoint_serves_as_embedder(tmp_path: Path) -> None:
    import transformers

    from tests.support.tiny_decoders import modernbert_config_kwargs

    torch.manual_seed(0)
    config = transformers.ModernBertConfig(**modernbert_config_kwargs())
    config._attn_implementation = "eager"
    mlm: Any = transformers.ModernBertForMaskedLM(config)
    mlm.eval()
    mlm.save_pretrained(tmp_path)
    batch = decoder_batch()
    ours = _session(tmp_path, Head.BASE, Variant.PLAIN).run(None, batch)[0]
    ref = _reference(mlm.model, batch).last_hidden_state.numpy()
    valid = batch["attention_mask"].astype(bool)
    _assert_close(ours[valid], ref[valid])


def test_missing_tensor_is_named(tmp_path: Path) -> None:
    make_modernbert("base", tmp_path)
    config = json.loads((tmp_path / "config.json").read_text()) | {"attention_bias": True}
    with pytest.raises(WeightMappingError, match=r"layers\.0\.attn\.Wqkv\.bias"):
        export_onnx(config, checkpoint_files(tmp_path), Head.BASE)
