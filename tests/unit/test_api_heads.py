"""Classifiers and re-rankers through the in-process API, against transformers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import tei_ort
from tei_ort.errors import EmptyError, ModelTypeError
from tei_ort.model.info import ModelKind
from tests.support.tiny_models import make_served_model

PAIRS = [("what is onnx?", "ONNX is an open format for models."), ("hi", "a b c d e f g")]


def _reference(model: object, path: Path, pairs: list[tuple[str, str]]) -> np.ndarray:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    batch = tokenizer(
        [p[0] for p in pairs], [p[1] for p in pairs], padding=True, return_tensors="pt"
    )
    if getattr(model.config, "type_vocab_size", 0) < 2:  # type: ignore[attr-defined]
        batch.pop("token_type_ids", None)  # a BERT tokenizer in front of a RoBERTa model
    with torch.no_grad():
        logits: np.ndarray = model(**batch).logits.numpy()  # type: ignore[operator]
    return logits


@pytest.mark.parametrize("model_type", ["bert", "xlm-roberta", "distilbert"])
def test_reranker_scores_and_order(tmp_path: Path, model_type: str) -> None:
    torch.set_num_threads(1)
    reference = make_served_model(model_type, "classifier", tmp_path, num_labels=1)
    model = tei_ort.load(str(tmp_path), engine_cache=str(tmp_path / "engines"))
    assert model.info.kind is ModelKind.RERANKER
    texts = [p[1] for p in PAIRS] + ["another document, longer than the others by a bit"]
    pairs = [(PAIRS[0][0], t) for t in texts]
    logits = _reference(reference, tmp_path, pairs)[:, 0]
    ranked = model.rerank(PAIRS[0][0], texts)
    expected = 1.0 / (1.0 + np.exp(-logits))
    assert [i for i, _ in ranked] == list(np.argsort(-expected, kind="stable"))
    np.testing.assert_allclose([s for _, s in ranked], np.sort(expected)[::-1], atol=1e-5)
    raw = model.rerank(PAIRS[0][0], texts, raw_scores=True)
    np.testing.assert_allclose(sorted(s for _, s in raw), np.sort(logits), atol=1e-4)
    with pytest.raises(EmptyError):
        model.rerank("q", [])
    with pytest.raises(ModelTypeError):
        model.embed("x")


def test_classifier_softmax(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    reference = make_served_model("roberta", "classifier", tmp_path, num_labels=3)
    model = tei_ort.load(str(tmp_path), engine_cache=str(tmp_path / "engines"))
    assert model.info.kind is ModelKind.CLASSIFIER
    assert model.labels() == ["LABEL_0", "LABEL_1", "LABEL_2"]
    logits = _reference(reference, tmp_path, PAIRS)
    scores = model.predict(PAIRS)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    np.testing.assert_allclose(model.predict(PAIRS, raw_scores=True), logits, atol=1e-4)
    single = model.predict("just one text")
    assert single.shape == (1, 3)
    np.testing.assert_allclose(single.sum(), 1.0, rtol=1e-5)
