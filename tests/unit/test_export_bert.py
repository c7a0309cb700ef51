"""The BERT-family exporter against transformers, every family x head x variant."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from tei_ort.engines.base import EngineInputs
from tei_ort.exporters.export import Variant, export_onnx
from tei_ort.model.info import Head, Pooling
from tei_ort.serving.pooling import pool
from tests.support.graphs import checkpoint_files
from tests.support.tiny_models import HEAD_CLASSES, make_model, mixed_batch

MODEL_TYPES = list(HEAD_CLASSES)
ATOL = 1e-4
MIN_COSINE = 0.99999


def _session(model_dir: Path, head: Head, variant: Variant) -> ort.InferenceSession:
    config = json.loads((model_dir / "config.json").read_text())
    graph = export_onnx(config, checkpoint_files(model_dir), head, variant)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(graph.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _run(session: ort.InferenceSession, batch: dict[str, np.ndarray]) -> np.ndarray:
    names = {i.name for i in session.get_inputs()}
    result: np.ndarray = session.run(None, {k: v for k, v in batch.items() if k in names})[0]
    return result


def _reference(
    model: object, model_type: str, head: str, batch: dict[str, np.ndarray]
) -> np.ndarray:
    torch.set_num_threads(1)
    kwargs = {k: torch.from_numpy(v) for k, v in batch.items()}
    if model_type != "bert":  # only BERT's checkpoints here use token types
        kwargs.pop("token_type_ids")
    with torch.no_grad():
        out = model(**kwargs)  # type: ignore[operator]
    if head == "base":
        return out.last_hidden_state.numpy()
    if head == "classifier":
        return out.logits.numpy()
    mask = kwargs["attention_mask"].unsqueeze(-1)
    return (torch.log1p(torch.relu(out.logits)) * mask).amax(dim=1).numpy()


def _assert_close(ours: np.ndarray, ref: np.ndarray) -> None:
    assert np.abs(ours - ref).max() <= ATOL
    a, b = ours.reshape(ours.shape[0], -1), ref.reshape(ref.shape[0], -1)
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    assert cos.min() >= MIN_COSINE


@pytest.mark.parametrize("variant", list(Variant))
@pytest.mark.parametrize("head", ["base", "classifier", "splade"])
@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_parity_with_transformers(
    tmp_path: Path, model_type: str, head: str, variant: Variant
) -> None:
    model = make_model(model_type, head, tmp_path)
    batch = mixed_batch(model_type)
    session = _session(tmp_path, Head(head), variant)
    ours = _run(session, batch)
    ref = _reference(model, model_type, head, batch)
    assert ours.shape == ref.shape
    if head == "base":
        valid = batch["attention_mask"].astype(bool)
        _assert_close(ours[valid], ref[valid])
        mask = batch["attention_mask"]
        _assert_close(pool(ours, mask, Pooling.MEAN), pool(ref, mask, Pooling.MEAN))
    else:
        _assert_close(ours, ref)


@pytest.mark.parametrize("head", ["base", "splade"])
@pytest.mark.parametrize("model_type", ["bert", "roberta"])
def test_padding_changes_no_output(tmp_path: Path, model_type: str, head: str) -> None:
    make_model(model_type, head, tmp_path)
    batch = mixed_batch(model_type)
    session = _session(tmp_path, Head(head), Variant.ORT)
    padded = _run(session, batch)
    for row, length in enumerate(batch["attention_mask"].sum(axis=1)):
        alone = {k: v[row : row + 1, :length] for k, v in batch.items()}
        single = _run(session, alone)
        if head == "base":
            np.testing.assert_allclose(padded[row, :length], single[0], atol=1e-5)
        else:
            np.testing.assert_allclose(padded[row], single[0], atol=1e-5)


def test_engine_inputs_shape_helpers() -> None:
    batch = mixed_batch("bert")
    inputs = EngineInputs(batch["input_ids"], batch["attention_mask"])
    assert (inputs.batch_size, inputs.seq_len) == batch["input_ids"].shape
