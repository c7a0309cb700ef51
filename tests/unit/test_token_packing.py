"""tei_ort.exporters.token_packing: the packed CPU graph gives the padded graph's numbers on every
architecture and head, and really runs its linear layers on real tokens only."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tei_ort.engines.ort_engine import CPU_DISABLED_OPTIMIZERS
from tei_ort.exporters.cpu_graph import unfuse_skip_layer_norm
from tei_ort.exporters.export import export_onnx
from tei_ort.exporters.token_packing import pack_tokens
from tei_ort.model.info import Head
from tests.support.graphs import checkpoint_files
from tests.support.tiny_decoders import decoder_batch, make_decoder, make_modernbert
from tests.support.tiny_models import make_model, mixed_batch, run_graph
from tests.support.tiny_mpnet import make_mpnet

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _run(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> np.ndarray:
    return run_graph(model, feed, list(CPU_DISABLED_OPTIMIZERS))


def _packed_matmuls(model: onnx.ModelProto) -> int:
    return sum(n.op_type == "MatMul" and n.output[0].endswith(".packed") for n in model.graph.node)


def _left_padded(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same rows with their padding moved to the front (the -1 inverse-index case)."""
    mask = feed["attention_mask"]
    out = {k: np.zeros_like(v) for k, v in feed.items()}
    for row in range(mask.shape[0]):
        n = int(mask[row].sum())
        for k, v in feed.items():
            out[k][row, mask.shape[1] - n :] = v[row, :n]
    return out


def _check(
    config: dict[str, Any], model_dir: Path, head: Head, feed: dict[str, np.ndarray]
) -> onnx.ModelProto:
    padded = unfuse_skip_layer_norm(export_onnx(config, checkpoint_files(model_dir), head))
    expected = _run(padded, feed)
    packed = pack_tokens(
        unfuse_skip_layer_norm(export_onnx(config, checkpoint_files(model_dir), head))
    )
    got = _run(packed, feed)
    assert got.shape == expected.shape
    if head == Head.BASE:  # (B, T, H): padded positions are garbage in both graphs
        real = feed["attention_mask"].astype(bool)
        got, expected = got[real], expected[real]
    np.testing.assert_allclose(got, expected, atol=2e-5, rtol=1e-5)
    assert _packed_matmuls(packed) > 0
    return packed


def _config(model_dir: Path) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((model_dir / "config.json").read_text())
    return config


HEADS = {"base": Head.BASE, "classifier": Head.CLASSIFIER, "splade": Head.SPLADE}


@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("model_type", ["bert", "roberta", "distilbert"])
def test_bert_family(model_type: str, head: str, tmp_path: Path) -> None:
    make_model(model_type, head, tmp_path)
    feed = mixed_batch(model_type)
    packed = _check(_config(tmp_path), tmp_path, HEADS[head], feed)
    # every linear layer of every block runs packed: QKV stays in the fused attention
    layers = 2
    assert _packed_matmuls(packed) >= 3 * layers


@pytest.mark.parametrize("head", ["base", "classifier"])
def test_mpnet(head: str, tmp_path: Path) -> None:
    make_mpnet(head, tmp_path)
    _check(_config(tmp_path), tmp_path, HEADS[head], mixed_batch("bert"))


@pytest.mark.parametrize("name", ["nomic_bert_tiny", "jina_bert_v2_tiny", "gte_new_tiny"])
def test_fixture_architectures(name: str) -> None:
    model_dir = FIXTURES / name
    ids = np.load(model_dir / "input_ids.npy")
    mask = np.load(model_dir / "attention_mask.npy")
    feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    _check(_config(model_dir), model_dir, Head.BASE, feed)


def test_modernbert(tmp_path: Path) -> None:
    make_modernbert("base", tmp_path)
    _check(_config(tmp_path), tmp_path, Head.BASE, decoder_batch())


@pytest.mark.parametrize("model_type", ["qwen3", "llama"])
def test_decoders(model_type: str, tmp_path: Path) -> None:
    make_decoder(model_type, "base", tmp_path)
    _check(_config(tmp_path), tmp_path, Head.BASE, decoder_batch())


@pytest.mark.parametrize(
    "layout", [_left_padded, lambda feed: {k: v[3:] for k, v in feed.items()}], ids=["left", "full"]
)
def test_left_padding_and_no_padding(
    layout: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]], tmp_path: Path
) -> None:
    # hidden states: a classifier would read [CLS] from a left-padded row's padding
    make_model("bert", "base", tmp_path)
    _check(_config(tmp_path), tmp_path, Head.BASE, layout(mixed_batch("bert")))


def _toy_graph(reader: onnx.NodeProto, *extra: onnx.TensorProto) -> onnx.ModelProto:
    """x (B, T, 4) @ W, then ``reader`` of the product into the output y."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], np.eye(4, dtype=np.float32).ravel())
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"]), reader],
        "toy",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "sequence", 4]),
            helper.make_tensor_value_info(
                "attention_mask", TensorProto.INT64, ["batch", "sequence"]
            ),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [w, *extra],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_an_operator_across_tokens_reads_the_padded_tensor() -> None:
    """A sum over the sequence is not per token: it must see (B, T, 4) again, padding and all."""
    axes = onnx.numpy_helper.from_array(np.array([1], np.int64), "axes")
    model = pack_tokens(
        _toy_graph(helper.make_node("ReduceSum", ["xw", "axes"], ["y"], keepdims=0), axes)
    )
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    mask = np.array([[1, 1, 1], [1, 0, 0]], np.int64)
    y = _run(model, {"x": x, "attention_mask": mask})
    assert _packed_matmuls(model) == 1
    # padded rows hold a copy of a real token (row 1's padding: its token 0)
    np.testing.assert_allclose(y, np.stack([x[0].sum(0), 3 * x[1, 0]]))


def test_a_last_axis_counted_from_the_front_still_works_packed() -> None:
    """axis=2 / axes=[2] of (B, T, 4) is axis 1 of packed (N, 4): the pass rewrites it."""
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    mask = np.array([[1, 1, 1], [1, 1, 0]], np.int64)
    mean = pack_tokens(
        _toy_graph(helper.make_node("ReduceMean", ["xw"], ["y"], axes=[2], keepdims=1))
    )
    softmax = pack_tokens(_toy_graph(helper.make_node("Softmax", ["xw"], ["y"], axis=2)))
    assert _packed_matmuls(mean) == _packed_matmuls(softmax) == 1
    real = mask.astype(bool)
    got = _run(mean, {"x": x, "attention_mask": mask})
    np.testing.assert_allclose(got[real], x.mean(-1, keepdims=True)[real], rtol=1e-5)
    exp = np.exp(x - x.max(-1, keepdims=True))
    got = _run(softmax, {"x": x, "attention_mask": mask})
    np.testing.assert_allclose(got[real], (exp / exp.sum(-1, keepdims=True))[real], rtol=1e-5)


def test_a_graph_without_a_mask_is_left_alone() -> None:
    model = _toy_graph(helper.make_node("Relu", ["xw"], ["y"]))
    del model.graph.input[1]
    before = model.SerializeToString()
    assert pack_tokens(model).SerializeToString() == before
