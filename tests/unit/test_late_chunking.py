"""Late chunking: chunk vectors pooled from the whole document's token states (macro-windows
past the model's length, as jina-ai's reference does), against transformers; the pure
planning functions; `late: false` as the baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import tei_ort
from tei_ort.errors import ModelTypeError, ValidationError
from tei_ort.model.info import Pooling
from tei_ort.serving.late_chunking import (
    plan_chunks_by_spans,
    plan_chunks_by_tokens,
    plan_windows,
    pool_chunks,
    stitch,
)
from tests.support.tiny_models import make_served_model

DOC = (
    "Berlin is the capital of Germany. It has about 3.8 million people. "
    "The city is known for its museums, its history and its night life."
)
SPANS = [(0, 33), (34, 66), (67, len(DOC))]


def test_windows_and_stitching() -> None:
    assert plan_windows(10, 16, 4) == [(0, 10)]
    assert plan_windows(30, 16, 4) == [(0, 16), (12, 28), (24, 30)]
    states = np.arange(30, dtype=np.float32)[:, None]  # (T, 1): each token its position
    windows = plan_windows(30, 16, 4)
    parts = [states[s:e] + 1000 * k for k, (s, e) in enumerate(windows)]
    stitched = stitch(parts, windows, 4)
    # the first window's states, then each later window's after its overlap
    expected = np.concatenate([parts[0][:, 0], parts[1][4:, 0], parts[2][4:, 0]])
    np.testing.assert_array_equal(stitched[:, 0], expected)
    assert stitched.shape == (30, 1)


def test_pooling_rules() -> None:
    states = np.random.default_rng(0).normal(size=(9, 4)).astype(np.float32)
    ranges = [(1, 4), (4, 9)]
    np.testing.assert_allclose(
        pool_chunks(states, ranges, Pooling.MEAN),
        [states[1:4].mean(0), states[4:9].mean(0)],
        atol=1e-6,
    )
    np.testing.assert_array_equal(pool_chunks(states, ranges, Pooling.CLS), states[[1, 4]])
    np.testing.assert_array_equal(pool_chunks(states, ranges, Pooling.LAST_TOKEN), states[[3, 8]])


def test_chunk_plans() -> None:
    # [CLS] ab cd ef [SEP], characters 0-2, 3-5, 6-8
    offsets = [(0, 0), (0, 2), (3, 5), (6, 8), (0, 0)]
    special = [1, 0, 0, 0, 1]
    plan = plan_chunks_by_spans(offsets, special, [(0, 5), (6, 8)], 8)
    assert plan.tokens == [(1, 3), (3, 4)]
    plan = plan_chunks_by_tokens(offsets, special, size=2, overlap=1)
    assert plan.tokens == [(1, 3), (2, 4)] and plan.spans == [(0, 5), (3, 8)]
    shifted = plan_chunks_by_spans([(0, 0), (0, 7), (8, 10)], [1, 0, 0], [(0, 2)], 2, shift=8)
    assert shifted.tokens == [(2, 3)]  # the prompt's token is context, not the chunk
    with pytest.raises(ValidationError):
        plan_chunks_by_spans(offsets, special, [(4, 5)], 8)  # inside a token: no token starts
    with pytest.raises(ValidationError):
        plan_chunks_by_spans(offsets, special, [(0, 9)], 8)  # past the end
    with pytest.raises(ValidationError):
        plan_chunks_by_tokens(offsets, special, size=2, overlap=2)


def _reference(
    path: Path, model: Any, text: str, spans: list[tuple[int, int]], mean: bool
) -> np.ndarray:
    """transformers on the whole text, windows of 64 with 16 overlap past 64 tokens (jina's
    _embed_with_overlap), chunks pooled by their tokens' first characters."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    batch = tok(text, return_offsets_mapping=True, return_tensors="pt")
    ids = batch["input_ids"]
    n = ids.shape[1]
    states = []
    with torch.no_grad():
        start = 0
        while True:
            end = min(start + 64, n)
            out = model(input_ids=ids[:, start:end]).last_hidden_state[0]
            states.append(out if start == 0 else out[16:])
            if end >= n:
                break
            start += 48
    h = torch.cat(states).numpy()
    offsets = batch["offset_mapping"][0].tolist()
    vectors = []
    for s, e in spans:
        rows = [i for i, (a, b) in enumerate(offsets) if b > a and s <= a < e]
        vectors.append(h[rows].mean(0) if mean else h[rows[0]])
    v = np.asarray(vectors)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_late_chunks_match_transformers(tmp_path: Path, pooling: str) -> None:
    torch.set_num_threads(1)
    reference = make_served_model("bert", "base", tmp_path)
    model = tei_ort.load(
        str(tmp_path), engine_cache=str(tmp_path / "engines"), pooling=Pooling(pooling)
    )
    assert model.info.max_input_length == 64
    (one,) = model.embed_chunks(DOC, spans=[SPANS])
    assert one.spans == SPANS
    expected = _reference(tmp_path, reference, DOC, SPANS, pooling == "mean")
    np.testing.assert_allclose(one.vectors, expected, atol=2e-5)

    # a document of ~200 tokens: four overlapping windows of the model's 64
    long_doc = " ".join([DOC] * 6)
    spans = [(0, 33), (300, 420), (len(long_doc) - 60, len(long_doc))]
    (long,) = model.embed_chunks(long_doc, spans=[spans])
    np.testing.assert_allclose(
        long.vectors, _reference(tmp_path, reference, long_doc, spans, pooling == "mean"), atol=2e-5
    )

    # late=False: each chunk's text embedded on its own
    (alone,) = model.embed_chunks(DOC, spans=[SPANS], late=False)
    np.testing.assert_allclose(alone.vectors, model.embed([DOC[s:e] for s, e in SPANS]), atol=1e-6)
    assert not np.allclose(alone.vectors, one.vectors, atol=1e-3)  # context changes them


def test_token_chunks_cover_the_text(tmp_path: Path) -> None:
    make_served_model("bert", "base", tmp_path)
    model = tei_ort.load(
        str(tmp_path), engine_cache=str(tmp_path / "engines"), pooling=Pooling.MEAN
    )
    docs = [DOC, "short text"]
    chunked = model.embed_chunks(docs, size=8, overlap=2)
    assert [len(c.spans) for c in chunked][1] == 1
    assert chunked[0].spans[0][0] == 0 and chunked[0].spans[-1][1] == len(DOC)
    assert chunked[0].vectors.shape == (len(chunked[0].spans), 32)
    # the same chunks given as character spans answer the same vectors
    (again,) = model.embed_chunks(DOC, spans=[chunked[0].spans])
    # overlapping chunks share tokens, spans cannot tell which: compare the first one only
    np.testing.assert_allclose(again.vectors[0], chunked[0].vectors[0], atol=1e-6)
    with pytest.raises(ValidationError):
        model.embed_chunks(DOC)  # neither spans nor size
    with pytest.raises(ValidationError):
        model.embed_chunks([DOC, DOC], spans=[SPANS])  # one span list for two inputs


def test_chunks_need_a_single_vector_model(tmp_path: Path) -> None:
    from tests.support.tiny_colbert import make_pylate

    make_pylate(tmp_path)
    model = tei_ort.load(str(tmp_path), engine_cache=str(tmp_path / "engines"))
    with pytest.raises(ModelTypeError):
        model.embed_chunks(DOC, size=8)
