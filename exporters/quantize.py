"""int8 engines: dynamic quantization of an exported fp32 graph for the ONNX Runtime CPU.

Weights are quantized ahead of time to symmetric int8, one scale per output column, and
activations at run time to uint8 (ONNX Runtime's ``DynamicQuantizeLinear``: one scale per
tensor, so no calibration text is needed). ONNX Runtime runs u8 x s8 GEMMs (VNNI and AMX
kernels where the CPU has them) and fuses the steps into ``DynamicQuantizeMatMul``.

Accuracy decides the scheme (all-MiniLM-L6-v2, min cosine to fp32 on held-out real text,
tests/unit/test_int8_accuracy.py):

- One activation scale per *tensor* lets the largest token in the batch set the step for
  all others (BERT's [CLS]/[SEP] rows carry outliers), so the error depends on what a text
  is batched with: min cosine 0.96 for short texts in a batch of 60. Each quantized MatMul
  therefore first divides every row (token) by its own max |x| and multiplies the output
  row back: ``y = r * (x / r) @ W`` with ``r = max|x|`` per row, which is exact in fp32
  and makes the per-tensor step a per-token one (min cosine no longer depends on the batch).
- The feed-forward down projection (input: the activation's output) and the fused
  attention's QKV projection (``QAttention`` takes one activation scale and adds its bias
  inside, so rows cannot be rescaled around it) cost most of the remaining error: with
  them in int8 the min cosine is 0.989, with them in fp32 0.9935. They stay fp32.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

# Bump when the quantization scheme changes: it is part of the engine cache key.
QUANTIZER_VERSION = "2"

# Ops whose output feeds a feed-forward down projection (fused and plain spellings: the
# plain exact GELU ends in Mul, and so does a gated (GLU) activation).
_FFN_ACTIVATIONS = frozenset({"BiasGelu", "Gelu", "FastGelu", "QuickGelu", "Relu", "Mul"})

# guards the per-row division for an all-zero row
_ROW_EPS = 1e-6


def _matrices(model: onnx.ModelProto) -> set[str]:
    """Initializers of rank 2: ORT's int8 MatMul takes per-column scales of a matrix only
    (DeBERTa's per-head relative tables (N, D, 2S) stay float32)."""
    return {t.name for t in model.graph.initializer if len(t.dims) == 2}


def fp32_matmuls(model: onnx.ModelProto) -> list[str]:
    """The weight MatMuls kept in fp32: those whose input comes from an FFN activation."""
    producer = {out: node for node in model.graph.node for out in node.output}
    kept = []
    for node in model.graph.node:
        if node.op_type != "MatMul":
            continue
        source = producer.get(node.input[0])
        if source is not None and source.op_type in _FFN_ACTIVATIONS:
            kept.append(node.name)
    return kept


def int8_matmuls(model: onnx.ModelProto, keep_fp32: Iterable[str] | None = None) -> list[str]:
    """The MatMuls over a constant weight that get int8 weights."""
    kept = set(fp32_matmuls(model) if keep_fp32 is None else keep_fp32)
    weights = _matrices(model)
    return [
        n.name
        for n in model.graph.node
        if n.op_type == "MatMul" and n.input[1] in weights and n.name not in kept
    ]


def scale_rows(model: onnx.ModelProto, names: Iterable[str]) -> onnx.ModelProto:
    """Wrap each named MatMul as ``r * ((x / r) @ W)`` with ``r`` = max |x| over each row.

    Exact in fp32; after quantization it gives every token its own activation scale.
    Returns a new model; ``model`` is left as it was.
    """
    wanted = set(names)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    eps = "row_scale.eps"
    out.graph.initializer.append(numpy_helper.from_array(np.array(_ROW_EPS, np.float32), eps))
    nodes: list[onnx.NodeProto] = []
    for node in out.graph.node:
        if node.name not in wanted:
            nodes.append(node)
            continue
        p, x, y = node.name, node.input[0], node.output[0]
        nodes += [
            helper.make_node("Abs", [x], [f"{p}.abs"], name=f"{p}.abs"),
            # (..., T, 1): one scale per row (token)
            helper.make_node(
                "ReduceMax", [f"{p}.abs"], [f"{p}.rmax"], name=f"{p}.rmax", axes=[-1], keepdims=1
            ),
            helper.make_node("Max", [f"{p}.rmax", eps], [f"{p}.r"], name=f"{p}.r"),
            helper.make_node("Div", [x, f"{p}.r"], [f"{p}.xn"], name=f"{p}.xn"),
        ]
        node.input[0], node.output[0] = f"{p}.xn", f"{p}.yn"
        nodes.append(node)
        nodes.append(helper.make_node("Mul", [f"{p}.yn", f"{p}.r"], [y], name=f"{p}.unscale"))
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


def quantize_int8(
    model: onnx.ModelProto,
    *,
    keep_fp32: Iterable[str] | None = None,
    reduce_range: bool = False,
) -> onnx.ModelProto:
    """The int8 graph for ``model`` (which must have unique node names).

    ``keep_fp32`` names weight MatMuls left in fp32 (default: :func:`fp32_matmuls`); the
    fused Attention op always stays fp32. ``reduce_range``: 7-bit weights, for CPUs whose
    u8 x s8 kernels add pairs of products in 16 bits (see :data:`REDUCED_RANGE`).
    """
    # imported here: the quantization tooling is only needed when an int8 engine is built
    from onnxruntime.quantization import QuantType, quantize_dynamic

    names = int8_matmuls(model, keep_fp32)
    if not names:
        return model
    scaled = scale_rows(model, names)
    large = scaled.ByteSize() > 1_900_000_000  # protobuf's 2 GB limit, with a margin
    with tempfile.TemporaryDirectory(prefix="tei-ort-int8-") as tmp:
        out = Path(tmp) / "model.int8.onnx"
        quantize_dynamic(
            scaled,
            out,
            op_types_to_quantize=["MatMul"],
            nodes_to_quantize=names,
            per_channel=True,
            reduce_range=reduce_range,
            weight_type=QuantType.QInt8,
            use_external_data_format=large,
            # our graphs use contrib ops that ONNX shape inference cannot type
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
        return onnx.load(str(out), load_external_data=True)
