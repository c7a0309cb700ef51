"""exporters.cpu_graph: SkipLayerNormalization spelt out for the CPU gives the same numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tei_ort.engines.ort_engine import CPU_DISABLED_OPTIMIZERS
from tei_ort.exporters.cpu_graph import unfuse_skip_layer_norm
from tei_ort.exporters.export import Variant, export_onnx
from tei_ort.model.info import Head
from tests.support.graphs import checkpoint_files
from tests.support.tiny_models import make_model, mixed_batch, run_graph


def _run(model: onnx.ModelProto, disabled: list[str] | None = None) -> np.ndarray:
    return run_graph(model, mixed_batch("bert"), disabled)


def _optimized_ops(model: onnx.ModelProto, path: Path, disabled: list[str]) -> list[str]:
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(path)
    opts.log_severity_level = 3
    ort.InferenceSession(
        model.SerializeToString(),
        opts,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=disabled,
    )
    return [n.op_type for n in onnx.load(str(path)).graph.node]


@pytest.mark.parametrize("model_type", ["bert", "distilbert"])
def test_unfused_graph_matches(model_type: str, tmp_path: Path) -> None:
    make_model(model_type, "base", tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    graph = export_onnx(config, checkpoint_files(tmp_path), Head.BASE, Variant.ORT)
    assert any(n.op_type == "SkipLayerNormalization" for n in graph.graph.node)
    fused = _run(graph)
    unfused = unfuse_skip_layer_norm(graph)
    onnx.checker.check_model(unfused)
    assert not any(n.op_type == "SkipLayerNormalization" for n in unfused.graph.node)
    np.testing.assert_allclose(_run(unfused, list(CPU_DISABLED_OPTIMIZERS)), fused, atol=2e-5)
    # the optimizer name is right: with it disabled, ORT leaves the spelt-out form alone
    ops = _optimized_ops(unfused, tmp_path / "opt.onnx", list(CPU_DISABLED_OPTIMIZERS))
    assert "SkipLayerNormalization" not in ops and "LayerNormalization" in ops


def test_disabled_fusion_is_the_one_that_fuses() -> None:
    """Add + LayerNormalization is fused by ORT unless SkipLayerNormFusion is disabled (ORT
    accepts unknown optimizer names silently, so the name must be checked by its effect)."""
    from onnx import TensorProto, helper, numpy_helper

    shape = [2, 4, 8]
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["x", "s"], ["a"]),
            helper.make_node("LayerNormalization", ["a", "g", "b"], ["y"], axis=-1),
        ],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, shape),
            helper.make_tensor_value_info("s", TensorProto.FLOAT, shape),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        initializer=[
            numpy_helper.from_array(np.ones(8, np.float32), "g"),
            numpy_helper.from_array(np.zeros(8, np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "opt.onnx"
        assert _optimized_ops(model, path, []) == ["SkipLayerNormalization"]
        assert "SkipLayerNormalization" not in _optimized_ops(
            model, path, list(CPU_DISABLED_OPTIMIZERS)
        )


def test_sum_output_is_kept() -> None:
    """The pre-norm spelling (ModernBERT) reads output 3, the x + skip sum, downstream."""
    from onnx import TensorProto, helper, numpy_helper

    shape = [2, 3, 8]
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [
            helper.make_node(
                "SkipLayerNormalization",
                ["x", "s", "g", "b"],
                ["y", "", "", "sum"],
                domain="com.microsoft",
                epsilon=1e-5,
                name="sln",
            ),
            helper.make_node("Add", ["y", "sum"], ["out"]),
        ],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, shape),
            helper.make_tensor_value_info("s", TensorProto.FLOAT, shape),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, shape)],
        initializer=[
            numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "g"),
            numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b"),
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    model.ir_version = 8
    feed = {k: rng.standard_normal(shape).astype(np.float32) for k in ("x", "s")}

    def run(m: onnx.ModelProto) -> np.ndarray:
        session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        result: np.ndarray = session.run(None, feed)[0]
        return result

    fused = run(model)
    unfused = unfuse_skip_layer_norm(model)
    assert [n.op_type for n in unfused.graph.node] == ["Add", "LayerNormalization", "Add"]
    np.testing.assert_allclose(run(unfused), fused, atol=1e-5)
