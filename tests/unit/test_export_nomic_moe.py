"""NomicBert MoE (nomic-embed-text-v2-moe) beyond the golden fixture: the routing is
really exercised (other top-k or no experts give other vectors), and the fp16 graph."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tei_ort.exporters.export import Variant, export_onnx
from tei_ort.exporters.fp16 import to_float16
from tei_ort.model.info import Head, Pooling
from tei_ort.serving.pooling import pool
from tests.support.graphs import checkpoint_files
from tests.support.parity import assert_close, ort_session, parity

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "nomic_bert_moe_tiny"


def _run(config: dict[str, Any], fp16: bool = False) -> np.ndarray:
    graph = export_onnx(config, checkpoint_files(FIXTURE), Head.BASE, Variant.ORT)
    if fp16:
        graph = to_float16(graph)
    feeds = {"input_ids": np.load(FIXTURE / "input_ids.npy")}
    feeds["attention_mask"] = np.load(FIXTURE / "attention_mask.npy")
    out: np.ndarray = ort_session(graph).run(None, feeds)[0]
    return out.astype(np.float32)


def _config() -> dict[str, Any]:
    config: dict[str, Any] = json.loads((FIXTURE / "config.json").read_text())
    return config


def test_golden_pooled() -> None:
    mask = np.load(FIXTURE / "attention_mask.npy")
    ours = pool(_run(_config()), mask, Pooling.MEAN)
    assert_close(ours, np.load(FIXTURE / "pooled.npy"))


@pytest.mark.parametrize("change", [{"moe_top_k": 1}, {"moe_top_k": 4}])
def test_routing_matters(change: dict[str, Any]) -> None:
    mask = np.load(FIXTURE / "attention_mask.npy").astype(bool)
    golden = np.load(FIXTURE / "last_hidden_state.npy")
    ours = _run(_config() | change)
    assert parity(ours[mask], golden[mask])[0] > 1e-2


def test_fp16_graph_close_to_fp32() -> None:
    mask = np.load(FIXTURE / "attention_mask.npy")
    fp32 = pool(_run(_config()), mask, Pooling.MEAN)
    fp16 = pool(_run(_config(), fp16=True), mask, Pooling.MEAN)
    assert parity(fp16, fp32)[1] >= 0.999
