"""The MPNet exporter against transformers (MPNetModel / ForSequenceClassification /
ForMaskedLM) on a tiny random config, both variants, and its relative-position buckets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from tei_ort.exporters.export import Variant, export_onnx
from tei_ort.exporters.mpnet import relative_position_bucket
from tei_ort.model.info import Head, Pooling
from tei_ort.serving.pooling import pool
from tests.support.graphs import checkpoint_files
from tests.support.tiny_models import VOCAB, mixed_batch
from tests.support.tiny_mpnet import make_mpnet

ATOL = 1e-4
MIN_COSINE = 0.99999


def long_batch() -> dict[str, np.ndarray]:
    """Mixed lengths up to 150 tokens, so relative offsets cross the 128 clamp."""
    rng = np.random.default_rng(3)
    lengths = [5, 150, 40]
    ids = np.full((len(lengths), max(lengths)), 1, dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.integers(5, VOCAB, n)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask}


def _session(model_dir: Path, head: Head, variant: Variant) -> ort.InferenceSession:
    config = json.loads((model_dir / "config.json").read_text())
    graph = export_onnx(config, checkpoint_files(model_dir), head, variant)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(graph.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _run(session: ort.InferenceSession, batch: dict[str, np.ndarray]) -> np.ndarray:
    names = {i.name for i in session.get_inputs()}
    assert "token_type_ids" not in names  # MPNet has no token types
    result: np.ndarray = session.run(None, {k: v for k, v in batch.items() if k in names})[0]
    return result


def _reference(model: Any, head: str, batch: dict[str, np.ndarray]) -> np.ndarray:
    torch.set_num_threads(1)
    ids = torch.from_numpy(batch["input_ids"])
    mask = torch.from_numpy(batch["attention_mask"])
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask)
    if head == "base":
        result: np.ndarray = out.last_hidden_state.numpy()
    elif head == "classifier":
        result = out.logits.numpy()
    else:
        result = (torch.log1p(torch.relu(out.logits)) * mask.unsqueeze(-1)).amax(dim=1).numpy()
    return result


def _assert_close(ours: np.ndarray, ref: np.ndarray) -> None:
    assert np.abs(ours - ref).max() <= ATOL
    a, b = ours.reshape(ours.shape[0], -1), ref.reshape(ref.shape[0], -1)
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    assert cos.min() >= MIN_COSINE


@pytest.mark.parametrize("variant", list(Variant))
@pytest.mark.parametrize("head", ["base", "classifier", "splade"])
def test_parity_with_transformers(tmp_path: Path, head: str, variant: Variant) -> None:
    model = make_mpnet(head, tmp_path)
    session = _session(tmp_path, Head(head), variant)
    for batch in (mixed_batch("roberta"), long_batch()):
        ours, ref = _run(session, batch), _reference(model, head, batch)
        assert ours.shape == ref.shape
        if head == "base":
            mask = batch["attention_mask"]
            _assert_close(ours[mask.astype(bool)], ref[mask.astype(bool)])
            _assert_close(pool(ours, mask, Pooling.MEAN), pool(ref, mask, Pooling.MEAN))
        else:
            _assert_close(ours, ref)


def test_padding_changes_no_output(tmp_path: Path) -> None:
    make_mpnet("base", tmp_path)
    batch = long_batch()
    session = _session(tmp_path, Head.BASE, Variant.ORT)
    padded = _run(session, batch)
    for row, length in enumerate(batch["attention_mask"].sum(axis=1)):
        alone = {k: v[row : row + 1, :length] for k, v in batch.items()}
        np.testing.assert_allclose(padded[row, :length], _run(session, alone)[0], atol=1e-5)


def test_buckets_match_transformers() -> None:
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

    offsets = np.arange(-1100, 1100, dtype=np.int64)
    bucket = MPNetEncoder.relative_position_bucket  # untyped in transformers
    expected = bucket(torch.from_numpy(offsets)).numpy()  # type: ignore[no-untyped-call]
    np.testing.assert_array_equal(relative_position_bucket(offsets), expected)


def test_other_bucket_counts_are_refused(tmp_path: Path) -> None:
    from tei_ort.errors import UnsupportedModelError

    make_mpnet("base", tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["relative_attention_num_buckets"] = 64
    with pytest.raises(UnsupportedModelError, match="relative_attention_num_buckets 64"):
        export_onnx(config, checkpoint_files(tmp_path), Head.BASE)
