"""NomicBert (v1 and the v2 MoE), JinaBERT v2 and GTE "new" exporters against golden outputs
of their original modeling code (tests/fixtures/*/README.txt says how each was made), both
variants."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from safetensors.numpy import load_file, save_file

from tei_ort.errors import UnsupportedModelError
from tei_ort.exporters import layers
from tei_ort.exporters.export import Variant, architecture_of, export_onnx
from tei_ort.model.info import Head, Pooling
from tei_ort.serving.pooling import pool
from tests.support.graphs import checkpoint_files

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
POOLING = {
    "nomic_bert_tiny": Pooling.MEAN,
    "jina_bert_v2_tiny": Pooling.MEAN,
    "gte_new_tiny": Pooling.CLS,
    "nomic_bert_moe_tiny": Pooling.MEAN,
}
ATOL = 1e-4
MIN_COSINE = 0.99999


def _config(name: str) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((FIXTURES / name / "config.json").read_text())
    return config


def _session(
    config: dict[str, Any], model_dir: Path, variant: Variant, head: Head = Head.BASE
) -> ort.InferenceSession:
    graph = export_onnx(config, checkpoint_files(model_dir), head, variant)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(graph.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _run(session: ort.InferenceSession, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    feeds = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in {i.name for i in session.get_inputs()}:
        feeds["token_type_ids"] = np.zeros_like(ids)  # the goldens were run with zeros
    result: np.ndarray = session.run(None, feeds)[0]
    return result


def _golden(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    d = FIXTURES / name
    return (
        np.load(d / "input_ids.npy"),
        np.load(d / "attention_mask.npy"),
        np.load(d / "last_hidden_state.npy"),
        np.load(d / "pooled.npy"),
    )


def _assert_close(ours: np.ndarray, ref: np.ndarray) -> None:
    assert np.abs(ours - ref).max() <= ATOL
    cos = (ours * ref).sum(-1) / (np.linalg.norm(ours, axis=-1) * np.linalg.norm(ref, axis=-1))
    assert cos.min() >= MIN_COSINE


@pytest.mark.parametrize("variant", list(Variant))
@pytest.mark.parametrize("name", list(POOLING))
def test_matches_golden_outputs(name: str, variant: Variant) -> None:
    ids, mask, hidden, pooled = _golden(name)
    ours = _run(_session(_config(name), FIXTURES / name, variant), ids, mask)
    assert ours.shape == hidden.shape
    valid = mask.astype(bool)
    _assert_close(ours[valid], hidden[valid])
    _assert_close(pool(ours, mask, POOLING[name]), pooled)


@pytest.mark.parametrize("name", list(POOLING))
def test_padding_changes_no_output(name: str) -> None:
    ids, mask, _, _ = _golden(name)
    session = _session(_config(name), FIXTURES / name, Variant.ORT)
    padded = _run(session, ids, mask)
    for row, length in enumerate(mask.sum(axis=1)):
        alone = _run(session, ids[row : row + 1, :length], mask[row : row + 1, :length])
        np.testing.assert_allclose(padded[row, :length], alone[0], atol=2e-5)


def test_alibi_slopes_for_twelve_heads() -> None:
    """jina-embeddings-v2-base-en has 12 heads: the 8 slopes of 8 heads, then every other
    slope of 16 heads (the ALiBi paper's rule, as jina's _get_alibi_head_slopes does it)."""
    expected = [2.0 ** -(i + 1) for i in range(8)] + [2.0 ** -(i + 0.5) for i in range(4)]
    np.testing.assert_allclose(layers.alibi_slopes(12), expected, rtol=1e-6)
    np.testing.assert_allclose(layers.alibi_slopes(4), [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8])


def test_jina_bert_is_told_apart_from_bert() -> None:
    assert architecture_of(_config("jina_bert_v2_tiny")) == "jina_bert"


def test_gte_single_token_type_is_a_constant_row(tmp_path: Path) -> None:
    """gte-multilingual-base: type_vocab_size 1 adds row 0 to every token."""
    tensors = load_file(str(FIXTURES / "gte_new_tiny" / "model.safetensors"))
    row = np.random.default_rng(0).normal(size=(1, 64)).astype(np.float32)
    with_types = dict(tensors) | {"embeddings.token_type_embeddings.weight": row}
    (tmp_path / "typed").mkdir()
    save_file(with_types, str(tmp_path / "typed" / "model.safetensors"))
    folded = dict(tensors)
    folded["embeddings.word_embeddings.weight"] = tensors["embeddings.word_embeddings.weight"] + row
    (tmp_path / "folded").mkdir()
    save_file(folded, str(tmp_path / "folded" / "model.safetensors"))

    ids, mask, _, _ = _golden("gte_new_tiny")
    config = _config("gte_new_tiny")
    typed = _session(config | {"type_vocab_size": 1}, tmp_path / "typed", Variant.PLAIN)
    assert "token_type_ids" not in {i.name for i in typed.get_inputs()}
    expected = _run(_session(config, tmp_path / "folded", Variant.PLAIN), ids, mask)
    np.testing.assert_allclose(_run(typed, ids, mask), expected, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        ("gte_new_tiny", {"logn_attention_scale": True}, "logn_attention_scale"),
        (
            "gte_new_tiny",
            {"rope_scaling": {"type": "ntk", "factor": 2.0, "mixed_b": 0.5}},
            "mixed_b",
        ),
        ("gte_new_tiny", {"rope_scaling": {"type": "yarn", "factor": 2.0}}, "rope_scaling"),
        ("gte_new_tiny", {"layer_norm_type": "rms_norm"}, "layer_norm_type 'rms_norm'"),
        ("gte_new_tiny", {"position_embedding_type": "absolute"}, "position_embedding_type"),
        ("nomic_bert_tiny", {"rotary_scaling_factor": 2.0}, "rotary_scaling_factor"),
        ("nomic_bert_tiny", {"prenorm": True}, "prenorm"),
        ("nomic_bert_tiny", {"activation_function": "geglu"}, "activation_function 'geglu'"),
        ("nomic_bert_moe_tiny", {"moe_normalize_expert_weights": 1.0}, "moe_normalize_expert"),
        ("nomic_bert_moe_tiny", {"num_shared_experts": 1}, "num_shared_experts"),
        ("nomic_bert_moe_tiny", {"expert_choice_router": True}, "expert_choice_router"),
        ("nomic_bert_moe_tiny", {"num_experts": 0}, "num_experts and moe_every_n_layers"),
        ("nomic_bert_tiny", {"rotary_emb_fraction": 0.5}, "rotary_emb_fraction"),
        ("jina_bert_v2_tiny", {"feed_forward_type": "original"}, "feed_forward_type"),
        (
            "jina_bert_v2_tiny",
            {"_name_or_path": "jinaai/jina-bert-v2-qk-post-norm"},
            "qk-post-norm",
        ),
    ],
)
def test_unsupported_options_are_refused_by_name(
    name: str, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(UnsupportedModelError, match=message):
        export_onnx(_config(name) | change, checkpoint_files(FIXTURES / name), Head.BASE)


def test_qk_post_norm_tensors_are_refused(tmp_path: Path) -> None:
    """Refused from its tensors too, whatever the config names."""
    tensors = load_file(str(FIXTURES / "jina_bert_v2_tiny" / "model.safetensors"))
    extra = {"encoder.layer.0.attention.self.layer_norm_q.weight": np.ones(64, np.float32)}
    save_file(dict(tensors) | extra, str(tmp_path / "model.safetensors"))
    with pytest.raises(UnsupportedModelError, match="QK post-norm"):
        export_onnx(_config("jina_bert_v2_tiny"), [tmp_path / "model.safetensors"], Head.BASE)


@pytest.mark.parametrize(
    ("name", "head"),
    [
        ("nomic_bert_tiny", Head.CLASSIFIER),
        ("nomic_bert_tiny", Head.SPLADE),
        ("jina_bert_v2_tiny", Head.SPLADE),
        ("gte_new_tiny", Head.SPLADE),
    ],
)
def test_heads_without_a_checkpoint_layout_are_refused(name: str, head: Head) -> None:
    with pytest.raises(UnsupportedModelError):
        export_onnx(_config(name), checkpoint_files(FIXTURES / name), head)
