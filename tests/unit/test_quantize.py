"""tei_ort.exporters.quantize on tiny BERTs: which MatMuls stay fp32, the int8 graph, the target."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from tei_ort.errors import EngineUnavailableError
from tei_ort.exporters.export import Variant, export_onnx
from tei_ort.exporters.quantize import fp32_matmuls, int8_matmuls, quantize_int8, scale_rows
from tei_ort.model.info import Head
from tei_ort.model.options import ModelOptions
from tei_ort.model.targets import select_target
from tests.support.graphs import checkpoint_files
from tests.support.tiny_models import make_model, mixed_batch


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny-bert")
    make_model("bert", "base", out)
    return out


def _graph(model_dir: Path, variant: Variant, head: Head = Head.BASE) -> onnx.ModelProto:
    config = json.loads((model_dir / "config.json").read_text())
    return export_onnx(config, checkpoint_files(model_dir), head, variant)


def _run(model: onnx.ModelProto) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(
        model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
    )
    names = {i.name for i in session.get_inputs()}
    batch = {k: v for k, v in mixed_batch("bert").items() if k in names}
    result: np.ndarray = session.run(None, batch)[0]
    return result


@pytest.mark.parametrize("variant", list(Variant))
def test_down_projections_stay_fp32(tiny_bert: Path, variant: Variant) -> None:
    graph = _graph(tiny_bert, variant)
    kept = fp32_matmuls(graph)
    assert len(kept) == 2  # one FFN down projection per layer
    nodes = {n.name: n for n in graph.graph.node}
    sizes = {t.name: tuple(t.dims) for t in graph.graph.initializer}
    for name in kept:
        assert sizes[nodes[name].input[1]] == (64, 32)  # (intermediate, hidden)


def test_int8_graph(tiny_bert: Path) -> None:
    fp32 = _graph(tiny_bert, Variant.ORT)
    kept = set(fp32_matmuls(fp32))
    assert len(int8_matmuls(fp32)) == 4  # attention output and FFN up, two layers
    q = quantize_int8(fp32)
    ops = [n.op_type for n in q.graph.node]
    assert ops.count("MatMulInteger") == 4
    assert ops.count("Attention") == 2  # the fused attention stays fp32
    # the kept MatMuls are still fp32 MatMuls over fp32 weights
    weights = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    float_matmuls = {n.name: n for n in q.graph.node if n.op_type == "MatMul"}
    assert kept <= set(float_matmuls)
    for name in kept:
        assert weights[float_matmuls[name].input[1]].dtype == np.float32
    # every quantized weight is int8 with one scale per output column
    for node in q.graph.node:
        if node.op_type == "MatMulInteger":
            w = weights[node.input[1]]
            assert w.dtype == np.int8
            assert weights[node.input[3]].shape == (w.shape[1],)


def test_row_scaling_is_exact_in_fp32(tiny_bert: Path) -> None:
    fp32 = _graph(tiny_bert, Variant.ORT)
    scaled = scale_rows(fp32, int8_matmuls(fp32))
    assert len(scaled.graph.node) == len(fp32.graph.node) + 5 * 4
    np.testing.assert_allclose(_run(scaled), _run(fp32), rtol=1e-5, atol=1e-5)


def test_int8_close_to_fp32(tiny_bert: Path) -> None:
    fp32 = _graph(tiny_bert, Variant.ORT)
    ref, ours = _run(fp32), _run(quantize_int8(fp32))
    mask = mixed_batch("bert")["attention_mask"].astype(bool)
    a, b = ref[mask], ours[mask]  # (tokens, H), real tokens only
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    assert cos.min() >= 0.99
    assert not np.array_equal(a, b)  # it did quantize


def test_keep_everything_fp32_changes_nothing(tiny_bert: Path) -> None:
    fp32 = _graph(tiny_bert, Variant.ORT)
    names = [n.name for n in fp32.graph.node if n.op_type == "MatMul"]
    q = quantize_int8(fp32, keep_fp32=names)
    np.testing.assert_array_equal(_run(q), _run(fp32))


def test_splade_head_quantizes(tmp_path: Path) -> None:
    make_model("bert", "splade", tmp_path)
    fp32 = _graph(tmp_path, Variant.ORT, Head.SPLADE)
    ref, ours = _run(fp32), _run(quantize_int8(fp32))
    cos = (ref * ours).sum(-1) / (np.linalg.norm(ref, axis=-1) * np.linalg.norm(ours, axis=-1))
    assert cos.min() >= 0.99


def test_select_target_int8() -> None:
    target = select_target(ModelOptions(dtype="int8"))
    assert target.dtype == "int8"
    assert target.providers == ("CPUExecutionProvider",)
    assert target.extra.startswith("int8-dynamic-v")  # the scheme is part of the cache key
    assert select_target(ModelOptions()).extra == ""


def test_select_target_rejects_float16_on_cpu() -> None:
    with pytest.raises(EngineUnavailableError, match="float32, bfloat16 or int8"):
        select_target(ModelOptions(dtype="float16"))
