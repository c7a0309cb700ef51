"""The decoder exporter (qwen2, qwen3, mistral, llama) against transformers.

The reference runs each sequence alone, unpadded: that is what a left-padding tokenizer
gives too, and what our right-padded batch must reproduce on every real token.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from tei_ort.errors import UnsupportedModelError
from tei_ort.exporters.export import Variant, export_onnx, export_to_file
from tei_ort.model.info import Head, Pooling
from tei_ort.serving.pooling import pool
from tests.support.graphs import checkpoint_files
from tests.support.tiny_decoders import DECODER_CLASSES, decoder_batch, make_decoder

ATOL = 1e-4
MIN_COSINE = 0.99999
MODEL_TYPES = list(DECODER_CLASSES)
YES, NO = 7, 11


def _session_from(model: Any) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    source = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def _export(model_dir: Path, head: Head, variant: Variant, **kwargs: Any) -> ort.InferenceSession:
    config = json.loads((model_dir / "config.json").read_text())
    return _session_from(export_onnx(config, checkpoint_files(model_dir), head, variant, **kwargs))


def _run(session: ort.InferenceSession, batch: dict[str, np.ndarray]) -> np.ndarray:
    result: np.ndarray = session.run(None, batch)[0]
    return result


def _lengths(batch: dict[str, np.ndarray]) -> list[int]:
    return [int(n) for n in batch["attention_mask"].sum(axis=1)]


def _unpadded(model: Any, batch: dict[str, np.ndarray]) -> list[Any]:
    """transformers' outputs for each row run alone (no padding, no mask)."""
    torch.set_num_threads(1)
    outs = []
    with torch.no_grad():
        for row, n in enumerate(_lengths(batch)):
            ids = torch.from_numpy(batch["input_ids"][row : row + 1, :n])
            outs.append(model(input_ids=ids))
    return outs


def _assert_close(ours: np.ndarray, ref: np.ndarray) -> None:
    assert np.abs(ours - ref).max() <= ATOL
    a, b = ours.reshape(ours.shape[0], -1), ref.reshape(ref.shape[0], -1)
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    assert cos.min() >= MIN_COSINE


def _check_hidden(session: ort.InferenceSession, model: Any, batch: dict[str, np.ndarray]) -> None:
    ours = _run(session, batch)
    refs = [o.last_hidden_state[0].numpy() for o in _unpadded(model, batch)]
    lengths = _lengths(batch)
    _assert_close(
        np.concatenate([ours[r, :n] for r, n in enumerate(lengths)]), np.concatenate(refs)
    )
    pooled = pool(ours, batch["attention_mask"], Pooling.LAST_TOKEN)
    _assert_close(pooled, np.stack([ref[-1] for ref in refs]))


@pytest.mark.parametrize("variant", list(Variant))
@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_base_parity_unpadded_reference(tmp_path: Path, model_type: str, variant: Variant) -> None:
    model = make_decoder(model_type, "base", tmp_path)
    start = time.perf_counter()
    session = _export(tmp_path, Head.BASE, variant)
    assert time.perf_counter() - start < 30
    _check_hidden(session, model, decoder_batch())


@pytest.mark.parametrize("variant", list(Variant))
def test_more_padding_changes_no_real_token(tmp_path: Path, variant: Variant) -> None:
    make_decoder("qwen3", "base", tmp_path)
    session = _export(tmp_path, Head.BASE, variant)
    batch = decoder_batch()
    wide = {k: np.pad(v, ((0, 0), (0, 9))) for k, v in batch.items()}  # 9 more pad columns
    wide["input_ids"][:, -9:] = 5  # whatever the pad positions hold
    narrow_out, wide_out = _run(session, batch), _run(session, wide)
    for row, n in enumerate(_lengths(batch)):
        np.testing.assert_allclose(wide_out[row, :n], narrow_out[row, :n], atol=1e-5)


@pytest.mark.parametrize(
    ("model_type", "extra"),
    [
        ("llama", {"rope_scaling": {"rope_type": "linear", "factor": 2.0}}),
        ("llama", {"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}}),
        (
            "llama",
            {
                "rope_scaling": {
                    "rope_type": "llama3",
                    "factor": 8.0,
                    "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 16,
                }
            },
        ),
        ("qwen2", {"use_sliding_window": True, "sliding_window": 5, "max_window_layers": 1}),
        ("qwen3", {"attention_bias": True}),
    ],
)
def test_config_variants(tmp_path: Path, model_type: str, extra: dict[str, Any]) -> None:
    model = make_decoder(model_type, "base", tmp_path, **extra)
    for variant in Variant:
        _check_hidden(_export(tmp_path, Head.BASE, variant), model, decoder_batch())


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_checkpoint(tmp_path: Path, dtype: str) -> None:
    model = make_decoder("qwen3", "base", tmp_path, torch_dtype=dtype)
    header_len = int.from_bytes((tmp_path / "model.safetensors").read_bytes()[:8], "little")
    header = json.loads((tmp_path / "model.safetensors").read_bytes()[8 : 8 + header_len])
    assert {v["dtype"] for k, v in header.items() if k != "__metadata__"} == {
        {"bfloat16": "BF16", "float16": "F16"}[dtype]
    }
    # the reference holds the same rounded weights, widened back to float32
    _check_hidden(_export(tmp_path, Head.BASE, Variant.ORT), model, decoder_batch())


@pytest.mark.parametrize(
    ("rope", "message"),
    [
        ({"rope_type": "yarn", "factor": 4.0}, "'yarn'"),
        ({"rope_type": "longrope"}, "'longrope'"),
        ({"rope_type": "default", "partial_rotary_factor": 0.5}, "partial_rotary_factor"),
    ],
)
def test_rope_we_cannot_reproduce_is_refused(
    tmp_path: Path, rope: dict[str, Any], message: str
) -> None:
    make_decoder("llama", "base", tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config.pop("rope_parameters", None)
    config["rope_scaling"] = rope
    with pytest.raises(UnsupportedModelError, match=message):
        export_onnx(config, checkpoint_files(tmp_path), Head.BASE)


@pytest.mark.parametrize("variant", list(Variant))
@pytest.mark.parametrize(("model_type", "labels"), [("qwen3", 1), ("llama", 3)])
def test_sequence_classifier(
    tmp_path: Path, model_type: str, labels: int, variant: Variant
) -> None:
    model = make_decoder(model_type, "classifier", tmp_path, num_labels=labels)
    batch = decoder_batch()
    ours = _run(_export(tmp_path, Head.CLASSIFIER, variant), batch)
    ref = np.concatenate([o.logits.numpy() for o in _unpadded(model, batch)])
    assert ours.shape == (4, labels)
    _assert_close(ours, ref)


@pytest.mark.parametrize("variant", list(Variant))
@pytest.mark.parametrize("tied", [False, True])
def test_yes_no_logit_head(tmp_path: Path, tied: bool, variant: Variant) -> None:
    model = make_decoder("qwen3", "causal_lm", tmp_path, tie_word_embeddings=tied)
    batch = decoder_batch()
    ours = _run(_export(tmp_path, Head.YES_NO_LOGIT, variant, yes_no_token_ids=(YES, NO)), batch)
    last = np.stack([o.logits[0, -1].numpy() for o in _unpadded(model, batch)])  # (B, V)
    expected = (last[:, YES] - last[:, NO])[:, None]
    assert ours.shape == (4, 1)
    _assert_close(ours, expected)
    # sigmoid of the difference is the two-way softmax's P(yes)
    p_yes = torch.softmax(torch.from_numpy(last[:, [NO, YES]]), dim=-1)[:, 1].numpy()
    np.testing.assert_allclose(1 / (1 + np.exp(-ours[:, 0])), p_yes, atol=1e-5)


def test_causal_lm_served_as_embedder_drops_lm_head(tmp_path: Path) -> None:
    # a *ForCausalLM checkpoint ("model." prefix, lm_head) exports as a bare embedder
    model = make_decoder("mistral", "causal_lm", tmp_path)
    _check_hidden(_export(tmp_path, Head.BASE, Variant.PLAIN), model.model, decoder_batch())


def test_external_data_path(tmp_path: Path) -> None:
    model_dir, out = tmp_path / "model", tmp_path / "engine"
    out.mkdir()
    model = make_decoder("qwen2", "base", model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    files = checkpoint_files(model_dir)
    path = out / "model.onnx"
    assert export_to_file(config, files, Head.BASE, path, external_threshold=0)
    data = out / "model.onnx.data"
    assert data.stat().st_size > 4 * 64 * 128  # the embedding table at least
    assert path.stat().st_size < 200_000  # only the graph and small constants inline
    _check_hidden(_session_from(str(path)), model, decoder_batch())
    # under the threshold: one self-contained file
    inline = tmp_path / "inline.onnx"
    assert not export_to_file(config, files, Head.BASE, inline)
    assert not (tmp_path / "inline.onnx.data").exists()


@pytest.mark.parametrize("variant", list(Variant))
def test_sliding_window_and_theta_matter(tmp_path: Path, variant: Variant) -> None:
    """The same Mistral weights read without the window, or with another theta, differ."""
    model = make_decoder("mistral", "base", tmp_path)
    batch = decoder_batch()
    refs = np.concatenate([o.last_hidden_state[0].numpy() for o in _unpadded(model, batch)])
    config = json.loads((tmp_path / "config.json").read_text())
    theta = {"rope_type": "default", "rope_theta": 500.0}
    for overrides in ({"sliding_window": None}, {"rope_parameters": theta}):
        graph = export_onnx(config | overrides, checkpoint_files(tmp_path), Head.BASE, variant)
        ours = _run(_session_from(graph), batch)
        flat = np.concatenate([ours[r, :n] for r, n in enumerate(_lengths(batch))])
        assert np.abs(flat - refs).max() > 1e-3
