"""ColBERT models in both Hub formats through the in-process API, against references that
encode as stanford ColBERT and PyLate do (markers, [MASK] query expansion, punctuation
skiplist, L2-normalized projected token vectors)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import tei_ort
from tei_ort.errors import ValidationError
from tei_ort.model.info import Head, Pooling
from tei_ort.model.late_config import LateFormat
from tests.support.tiny_colbert import make_hf_colbert, make_pylate, pylate, stanford_colbert

QUERIES = [
    "what is colbert?",
    "late interaction, token by token!",
    "a query far longer than the query length allows for sure",
]
DOCS = [
    "ColBERT scores a document by MaxSim: each query token finds its best match.",
    "short.",
    "Punctuation, like this; is skipped: in documents!",
]


def _check(got: list[np.ndarray], expected: list[np.ndarray]) -> None:
    assert [g.shape for g in got] == [e.shape for e in expected]
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, atol=2e-5)
        cosine = np.sum(g * e, axis=1)  # unit vectors
        assert cosine.min() >= 0.9999


@pytest.mark.parametrize("attend", [False, True])
def test_hf_colbert_matches_stanford_encoding(tmp_path: Path, attend: bool) -> None:
    torch.set_num_threads(1)
    encoder = make_hf_colbert(tmp_path, attend_to_mask_tokens=attend)
    model = tei_ort.load(str(tmp_path), engine_cache=str(tmp_path / "engines"))
    late = model.info.late_interaction
    assert late is not None and late.format is LateFormat.COLBERT
    assert model.info.head is Head.LATE and late.attend_to_expansion is attend
    queries = model.embed_all(QUERIES, input_type="query")
    assert all(q.shape == (12, 16) for q in queries)  # padded with [MASK] to query_maxlen
    _check(queries, stanford_colbert(tmp_path, encoder, QUERIES, query=True))
    docs = model.embed_all(DOCS, input_type="document")
    _check(docs, stanford_colbert(tmp_path, encoder, DOCS, query=False))
    _check(model.embed_all(DOCS), docs)  # document is the default


@pytest.mark.parametrize(("attend", "expansion"), [(False, True), (True, True), (False, False)])
def test_pylate_matches_pylate_encoding(tmp_path: Path, attend: bool, expansion: bool) -> None:
    torch.set_num_threads(1)
    encoder = make_pylate(tmp_path, attend=attend, expansion=expansion)
    model = tei_ort.load(str(tmp_path), engine_cache=str(tmp_path / "engines"))
    late = model.info.late_interaction
    assert late is not None and late.format is LateFormat.PYLATE
    queries = model.embed_all(QUERIES, input_type="query")
    _check(queries, pylate(tmp_path, encoder, QUERIES, query=True))
    docs = model.embed_all(DOCS, input_type="document")
    _check(docs, pylate(tmp_path, encoder, DOCS, query=False))


def test_pylate_on_modernbert(tmp_path: Path) -> None:
    """GTE-ModernColBERT's backbone: local attention windows and the expansion mask together."""
    torch.set_num_threads(1)
    encoder = make_pylate(tmp_path, backbone="modernbert")
    model = tei_ort.load(str(tmp_path), engine_cache=str(tmp_path / "engines"))
    assert model.info.head is Head.LATE
    _check(
        model.embed_all(QUERIES, input_type="query"), pylate(tmp_path, encoder, QUERIES, query=True)
    )
    _check(model.embed_all(DOCS), pylate(tmp_path, encoder, DOCS, query=False))


def test_too_long_without_truncation_is_refused(tmp_path: Path) -> None:
    make_pylate(tmp_path)
    model = tei_ort.load(str(tmp_path), engine_cache=str(tmp_path / "engines"))
    with pytest.raises(ValidationError):
        model.embed_all([DOCS[0]], truncate=False)
    assert model.embed_all([DOCS[1]], truncate=False)[0].shape[1] == 16


def test_input_type_needs_a_late_interaction_model(tmp_path: Path) -> None:
    from tests.support.tiny_models import make_served_model

    make_served_model("bert", "base", tmp_path)
    model = tei_ort.load(
        str(tmp_path), engine_cache=str(tmp_path / "engines"), pooling=Pooling.MEAN
    )
    with pytest.raises(ValidationError):
        model.embed_all(["x"], input_type="query")


def test_in_process_rerank_is_maxsim(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    encoder = make_hf_colbert(tmp_path)
    model = tei_ort.load(str(tmp_path), engine_cache=str(tmp_path / "engines"))
    (query,) = stanford_colbert(tmp_path, encoder, [QUERIES[0]], query=True)
    docs = stanford_colbert(tmp_path, encoder, DOCS, query=False)
    expected = [float((query.astype(np.float64) @ d.T).max(axis=1).sum()) for d in docs]
    ranked = model.rerank(QUERIES[0], DOCS)
    assert [i for i, _ in ranked] == list(np.argsort(expected)[::-1])
    np.testing.assert_allclose([s for _, s in sorted(ranked)], expected, atol=1e-4)
    with pytest.raises(ValidationError):
        model.rerank(QUERIES[0], DOCS, hybrid_weights=(1.0, 1.0, 1.0))
