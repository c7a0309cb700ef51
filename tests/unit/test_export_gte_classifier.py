"""Sequence-classification heads on the golden fixture encoders, against numpy.

transformers ships neither NewForSequenceClassification (gte-multilingual-reranker-base)
nor JinaBertForSequenceClassification. Both read ``classifier(tanh(pooler.dense(h[:, 0])))``
(BERT's head; the encoder saved under ``new.`` / ``bert.``). The checkpoint here is the
fixture encoder with a seeded random head; the reference applies that head in float64 to
the fixture's golden last_hidden_state.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from safetensors.numpy import load_file, save_file

from tei_ort.errors import WeightMappingError
from tei_ort.exporters.export import Variant, export_onnx
from tei_ort.model.info import Head

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PREFIX = {"gte_new_tiny": "new.", "jina_bert_v2_tiny": "bert."}
LABELS = 1  # a re-ranker: one relevance logit


def _classifier_checkpoint(name: str, out: Path) -> dict[str, np.ndarray]:
    """The fixture encoder under its *For* prefix plus a random pooler and classifier."""
    rng = np.random.default_rng(7)
    encoder = load_file(str(FIXTURES / name / "model.safetensors"))
    tensors = {
        PREFIX[name] + key: value for key, value in encoder.items() if not key.startswith("pooler.")
    }
    head = {
        PREFIX[name] + "pooler.dense.weight": rng.normal(size=(64, 64)) / 8.0,
        PREFIX[name] + "pooler.dense.bias": rng.normal(size=64) * 0.1,
        "classifier.weight": rng.normal(size=(LABELS, 64)) / 8.0,
        "classifier.bias": rng.normal(size=LABELS) * 0.1,
    }
    tensors |= {k: v.astype(np.float32) for k, v in head.items()}
    save_file(tensors, str(out))
    return tensors


def _logits(name: str, checkpoint: Path, variant: Variant) -> np.ndarray:
    config = json.loads((FIXTURES / name / "config.json").read_text()) | {"num_labels": LABELS}
    graph = export_onnx(config, [checkpoint], Head.CLASSIFIER, variant)
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    ids = np.load(FIXTURES / name / "input_ids.npy")
    feeds = {"input_ids": ids, "attention_mask": np.load(FIXTURES / name / "attention_mask.npy")}
    if "token_type_ids" in {i.name for i in session.get_inputs()}:
        feeds["token_type_ids"] = np.zeros_like(ids)
    result: np.ndarray = session.run(None, feeds)[0]
    return result


@pytest.mark.parametrize("variant", list(Variant))
@pytest.mark.parametrize("name", list(PREFIX))
def test_classifier_matches_numpy_head(tmp_path: Path, name: str, variant: Variant) -> None:
    checkpoint = tmp_path / "model.safetensors"
    t = {k: v.astype(np.float64) for k, v in _classifier_checkpoint(name, checkpoint).items()}
    cls = np.load(FIXTURES / name / "last_hidden_state.npy")[:, 0].astype(np.float64)  # (B, H)
    pooled = np.tanh(
        cls @ t[PREFIX[name] + "pooler.dense.weight"].T + t[PREFIX[name] + "pooler.dense.bias"]
    )
    expected = pooled @ t["classifier.weight"].T + t["classifier.bias"]  # (B, 1)

    ours = _logits(name, checkpoint, variant)
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, atol=1e-4)


def test_missing_pooler_is_named(tmp_path: Path) -> None:
    checkpoint = tmp_path / "model.safetensors"
    tensors = _classifier_checkpoint("gte_new_tiny", checkpoint)
    del tensors["new.pooler.dense.bias"]
    save_file(tensors, str(checkpoint))
    with pytest.raises(WeightMappingError, match=re.escape("pooler.dense.bias")):
        _logits("gte_new_tiny", checkpoint, Variant.ORT)
