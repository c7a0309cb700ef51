"""The DeBERTa-v2 exporter against transformers' DebertaV2Model and its sequence classifier.

Two tiny configurations cover the switches: a v3-like one (log position buckets shorter
than the rows, shared attention keys, normed relative embeddings, no absolute positions)
and a v2-xlarge-like one (separate pos_*_proj, a Conv1d layer, clipped distances without
buckets, absolute positions, token types, a smaller embedding projected up). The
reference runs each row alone, unpadded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tei_ort.exporters.deberta_config import DebertaConfig, relative_positions
from tei_ort.exporters.export import Variant, export_onnx
from tei_ort.exporters.fp16 import to_float16
from tei_ort.model.info import Head
from tests.support.cpu import needs_int8_dot_product
from tests.support.graphs import checkpoint_files
from tests.support.parity import assert_close, ort_session, parity, real_tokens
from tests.support.tiny_deberta import COMMON, CONFIGS
from tests.support.tiny_decoders import _perturb, decoder_batch


def _make(kind: str, head: str, out_dir: Path, labels: int = 1, seed: int = 0) -> Any:
    import transformers

    torch.manual_seed(seed)
    kwargs = COMMON | CONFIGS[kind]
    if head == "classifier":
        kwargs |= {"num_labels": labels, "pooler_hidden_act": "gelu"}
    config = transformers.DebertaV2Config(**kwargs)
    cls = (
        transformers.DebertaV2Model
        if head == "base"
        else transformers.DebertaV2ForSequenceClassification
    )
    model = cls(config).eval()
    _perturb(model, seed)
    model.save_pretrained(out_dir)
    return model


def _graph(model_dir: Path, head: Head, variant: Variant) -> Any:
    config = json.loads((model_dir / "config.json").read_text())
    return export_onnx(config, checkpoint_files(model_dir), head, variant)


def _alone(model: Any, batch: dict[str, np.ndarray]) -> list[Any]:
    torch.set_num_threads(1)
    outs = []
    with torch.no_grad():
        for row, n in enumerate(batch["attention_mask"].sum(axis=1)):
            ids = torch.from_numpy(batch["input_ids"][row : row + 1, : int(n)])
            types = torch.from_numpy(batch["token_type_ids"][row : row + 1, : int(n)])
            outs.append(model(input_ids=ids, token_type_ids=types))
    return outs


def _batch(session: Any) -> dict[str, np.ndarray]:
    batch = decoder_batch()
    types = np.zeros_like(batch["input_ids"])
    types[:, 5:] = 1  # a second segment, as a cross-encoder pair has
    types *= batch["attention_mask"]
    names = {i.name for i in session.get_inputs()}
    return batch | {"token_type_ids": types} if "token_type_ids" in names else batch


@pytest.mark.parametrize("variant", list(Variant))
@pytest.mark.parametrize("kind", list(CONFIGS))
def test_base_parity(tmp_path: Path, kind: str, variant: Variant) -> None:
    model = _make(kind, "base", tmp_path)
    session = ort_session(_graph(tmp_path, Head.BASE, variant))
    batch = _batch(session)
    full = batch | {
        "token_type_ids": batch.get("token_type_ids", np.zeros_like(batch["input_ids"]))
    }
    refs = [o.last_hidden_state[0].numpy() for o in _alone(model, full)]
    ours = session.run(None, batch)[0]
    assert_close(real_tokens(ours, batch), np.concatenate(refs))


@pytest.mark.parametrize("variant", list(Variant))
@pytest.mark.parametrize(("kind", "labels"), [("v3", 1), ("v2-conv", 3)])
def test_classifier_parity(tmp_path: Path, kind: str, labels: int, variant: Variant) -> None:
    model = _make(kind, "classifier", tmp_path, labels)
    session = ort_session(_graph(tmp_path, Head.CLASSIFIER, variant))
    batch = _batch(session)
    full = batch | {
        "token_type_ids": batch.get("token_type_ids", np.zeros_like(batch["input_ids"]))
    }
    ref = np.concatenate([o.logits.numpy() for o in _alone(model, full)])
    ours = session.run(None, batch)[0]
    assert ours.shape == (4, labels)
    assert_close(ours, ref)


@pytest.mark.parametrize(("buckets", "max_relative", "length"), [(256, 512, 512), (8, 64, 64)])
def test_log_buckets_match_transformers(buckets: int, max_relative: int, length: int) -> None:
    from transformers.models.deberta_v2.modeling_deberta_v2 import build_relative_position

    config = json.loads(json.dumps(COMMON | CONFIGS["v3"]))
    config |= {"position_buckets": buckets, "max_relative_positions": max_relative}
    cfg = DebertaConfig.from_config(config)
    probe = torch.zeros(1, length, 1)
    ref = build_relative_position(probe, probe, bucket_size=buckets, max_position=max_relative)
    np.testing.assert_array_equal(relative_positions(cfg, length), ref[0].numpy())


def test_fp16_graph_close_to_fp32(tmp_path: Path) -> None:
    _make("v3", "classifier", tmp_path, 3)
    graph = _graph(tmp_path, Head.CLASSIFIER, Variant.ORT)
    batch = decoder_batch()
    fp32 = ort_session(graph).run(None, batch)[0]
    fp16 = ort_session(to_float16(graph)).run(None, batch)[0].astype(np.float32)
    assert parity(fp16, fp32)[0] < 0.05


@pytest.mark.parametrize(
    ("kind", "overrides"),
    [
        ("v3", {"max_relative_positions": 32}),  # other log buckets, same table
        ("v3", {"pos_att_type": ["c2p"]}),
        ("v2-conv", {"conv_act": "tanh"}),
    ],
)
def test_each_switch_matters(tmp_path: Path, kind: str, overrides: dict[str, Any]) -> None:
    model = _make(kind, "base", tmp_path)
    config = json.loads((tmp_path / "config.json").read_text()) | overrides
    session = ort_session(export_onnx(config, checkpoint_files(tmp_path), Head.BASE))
    batch = _batch(session)
    full = batch | {
        "token_type_ids": batch.get("token_type_ids", np.zeros_like(batch["input_ids"]))
    }
    refs = [o.last_hidden_state[0].numpy() for o in _alone(model, full)]
    max_abs, _ = parity(real_tokens(session.run(None, batch)[0], batch), np.concatenate(refs))
    assert max_abs > 1e-3


@pytest.mark.parametrize(
    "reduce_range", [pytest.param(False, marks=needs_int8_dot_product), True], ids=["u8", "u7"]
)
def test_int8_graph_runs_and_keeps_relative_tables_fp32(tmp_path: Path, reduce_range: bool) -> None:
    """The per-head relative tables are rank 3: quantizing them would break ORT's int8
    MatMul (per-column scales of a matrix only), so only the matrices get int8 weights."""
    from tei_ort.exporters.quantize import int8_matmuls, quantize_int8

    _make("v3", "classifier", tmp_path, 1)
    graph = _graph(tmp_path, Head.CLASSIFIER, Variant.ORT)
    names = set(int8_matmuls(graph))
    tables = {i.name for i in graph.graph.initializer if len(i.dims) == 3}
    assert tables  # the c2p / p2c tables
    assert not any(n.name in names for n in graph.graph.node if set(n.input) & tables)
    batch = decoder_batch()
    fp32 = ort_session(graph).run(None, batch)[0]
    int8 = ort_session(quantize_int8(graph, reduce_range=reduce_range)).run(None, batch)[0]
    assert np.abs(int8 - fp32).max() < 0.05
