"""Per-row answers from one batch output."""

from __future__ import annotations

import numpy as np

from tei_ort.engines.base import OutputName
from tei_ort.model.info import Pooling
from tei_ort.serving.pooling import classifier_scores, l2_normalize, pool
from tei_ort.serving.postprocess import Mode, OutputSpec, postprocess, sparsify

RNG = np.random.default_rng(0)


def test_mixed_specs_in_one_batch() -> None:
    hidden = RNG.standard_normal((3, 4, 6)).astype(np.float32)  # (B, T, H)
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=np.int64)
    specs = [
        OutputSpec(Mode.POOLED, normalize=True),
        OutputSpec(Mode.TOKENS),
        OutputSpec(Mode.POOLED, normalize=False, dimensions=3),
    ]
    out = postprocess(
        hidden,
        mask,
        [3, 2, 4],
        specs,
        output_name=OutputName.LAST_HIDDEN_STATE,
        pooling=Pooling.MEAN,
    )
    pooled = pool(hidden, mask, Pooling.MEAN)
    np.testing.assert_allclose(out[0], l2_normalize(pooled[:1])[0], rtol=1e-6)
    np.testing.assert_array_equal(out[1], hidden[1, :2])
    np.testing.assert_allclose(out[2], pooled[2, :3], rtol=1e-6)


def test_dense_applies_after_pooling() -> None:
    hidden = RNG.standard_normal((1, 2, 4)).astype(np.float32)
    mask = np.ones((1, 2), dtype=np.int64)
    (out,) = postprocess(
        hidden,
        mask,
        [2],
        [OutputSpec(Mode.POOLED)],
        output_name=OutputName.LAST_HIDDEN_STATE,
        pooling=Pooling.CLS,
        dense=lambda x: x[:, :2] * 2,
    )
    np.testing.assert_allclose(out, hidden[0, 0, :2] * 2)


def test_scores_and_sparse() -> None:
    logits = np.array([[1.0, 2.0, 0.5], [0.0, 0.0, 0.0]], dtype=np.float32)
    mask = np.ones((2, 3), dtype=np.int64)
    soft, raw = postprocess(
        logits,
        mask,
        [3, 3],
        [OutputSpec(Mode.SCORES), OutputSpec(Mode.SCORES, raw_scores=True)],
        output_name=OutputName.LOGITS,
        pooling=None,
    )
    np.testing.assert_allclose(soft, classifier_scores(logits[:1], False)[0])
    np.testing.assert_array_equal(raw, logits[1])
    sparse = np.array([[0.0, 1.5, 0.0, 2.0]], dtype=np.float32)
    (vector,) = postprocess(
        sparse,
        mask[:1],
        [3],
        [OutputSpec(Mode.SPARSE)],
        output_name=OutputName.SPARSE_EMBEDDING,
        pooling=None,
    )
    assert sparsify(vector) == [{"index": 1, "value": 1.5}, {"index": 3, "value": 2.0}]


def test_splade_pooled_is_the_vocab_vector() -> None:
    sparse = np.array([[0.0, 3.0, 4.0]], dtype=np.float32)
    (out,) = postprocess(
        sparse,
        np.ones((1, 2), dtype=np.int64),
        [2],
        [OutputSpec(Mode.POOLED, normalize=True)],
        output_name=OutputName.SPARSE_EMBEDDING,
        pooling=None,
    )
    np.testing.assert_allclose(out, [0.0, 0.6, 0.8])
