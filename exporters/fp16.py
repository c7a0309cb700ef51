"""float16 conversion of a built graph, for GPU engines.

Weights and activations become float16; what loses accuracy in float16 stays float32:

- reductions that sum (ReduceMean / ReduceSum / ...), Log, Exp, Pow, CumSum and a square
  ``Mul(x, x)`` run in float32: a sum of squares of activations overflows float16 (65504)
  and log(1 + w) rounds small SPLADE weights to 0 in float16;
- elementwise ops whose activation inputs all come from float32 producers stay float32,
  so chains such as a mask cast to float, rotary angles (position x inverse frequency) or
  the SPLADE tail after its reduction are computed in float32 end to end;
- ReduceMax / ReduceMin are exact in any precision: they read the large tensor in float16
  (SPLADE's (B, T, V) logits) and their (small) result is cast to float32 at once;
- LayerNormalization, SkipLayerNormalization, SimplifiedLayerNormalization and Softmax run
  on float16 tensors with float32 accumulation inside the kernel (ONNX ``stash_type=1``;
  ONNX Runtime's CUDA kernels accumulate half inputs in float), which is what the fused
  attention and layer-norm kernels are fastest at.

Casts go only where a float32 tensor meets a float16 op or the other way round. Float
constants converted to float16 are clipped to its finite range (a -1e9 mask fill becomes
-65504, never -inf, so 0 * fill stays 0). Graph outputs listed in ``half_outputs`` leave in
float16 (half the bytes copied back from the device; the engine upcasts on the host), all
others in float32.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tei_ort.engines.base import OutputName

FLOAT = TensorProto.FLOAT
FLOAT16 = TensorProto.FLOAT16
FP16_MAX = float(np.finfo(np.float16).max)

#: always float32: they sum or exponentiate
FP32_OPS = frozenset(
    {
        "ReduceMean",
        "ReduceSum",
        "ReduceSumSquare",
        "ReduceL1",
        "ReduceL2",
        "ReduceLogSum",
        "ReduceLogSumExp",
        "ReduceProd",
        "Log",
        "Exp",
        "Pow",
        "CumSum",
        "Range",
    }
)
#: exact in float16; their result is cast to float32 for what follows
EXACT_REDUCTIONS = frozenset({"ReduceMax", "ReduceMin"})
#: ops whose outputs are never float, whatever their inputs
NON_FLOAT_OUTPUT = frozenset(
    {
        "Shape",
        "Size",
        "Equal",
        "Not",
        "Greater",
        "GreaterOrEqual",
        "Less",
        "LessOrEqual",
        "And",
        "Or",
        "Xor",
        "IsNaN",
        "IsInf",
        "ArgMax",
        "ArgMin",
        "NonZero",
    }
)
#: inputs that are indices, shapes or axes, never converted: (op, input index)
_INDEX_INPUTS = {
    ("Gather", 1),
    ("GatherElements", 1),
    ("Reshape", 1),
    ("Slice", 1),
    ("Slice", 2),
    ("Slice", 3),
    ("Slice", 4),
    ("Split", 1),
    ("Unsqueeze", 1),
    ("Squeeze", 1),
    ("Expand", 1),
    ("Tile", 1),
    ("CumSum", 1),
    ("ReduceMax", 1),
    ("ReduceMin", 1),
    ("ReduceMean", 1),
    ("ReduceSum", 1),
    ("Where", 0),
}

_FP16 = "fp16"
_FP32 = "fp32"


@dataclass
class _State:
    """Precision of every float tensor and the new graph being written."""

    initializers: dict[str, TensorProto]
    precision: dict[str, str] = field(default_factory=dict)  # float activation -> fp16/fp32
    non_float: set[str] = field(default_factory=set)
    casts: dict[tuple[str, str], str] = field(default_factory=dict)  # (tensor, to) -> name
    weights: dict[tuple[str, str], str] = field(default_factory=dict)
    new_initializers: list[TensorProto] = field(default_factory=list)
    nodes: list[onnx.NodeProto] = field(default_factory=list)


def to_float16(
    model: onnx.ModelProto,
    *,
    half_outputs: Collection[str] = (OutputName.LAST_HIDDEN_STATE.value,),
) -> onnx.ModelProto:
    """A float16 copy of ``model`` (see the module docstring for what stays float32)."""
    graph = model.graph
    state = _State(initializers={t.name: t for t in graph.initializer})
    for value in graph.input:
        if value.type.tensor_type.elem_type == FLOAT:
            state.precision[value.name] = _FP32
        else:
            state.non_float.add(value.name)
    for init in graph.initializer:
        if init.data_type != FLOAT:
            state.non_float.add(init.name)

    for node in graph.node:
        _convert_node(state, node)

    outputs = [_convert_output(state, out, half_outputs) for out in graph.output]
    new_graph = helper.make_graph(
        state.nodes,
        graph.name,
        list(graph.input),
        outputs,
        initializer=[t for t in graph.initializer if t.data_type != FLOAT] + state.new_initializers,
    )
    converted = helper.make_model(
        new_graph, opset_imports=list(model.opset_import), producer_name=model.producer_name
    )
    converted.ir_version = model.ir_version
    onnx.checker.check_model(converted, full_check=False)
    return converted


def node_precision(op_type: str, inputs: Iterable[str | None], same_inputs: bool) -> str:
    """fp16 or fp32 for a node, from its op and the precisions of its activation inputs.

    ``inputs`` holds the precision of each float activation input (None for constants);
    ``same_inputs`` is true for a binary op applied to one tensor twice (a square).
    """
    if op_type in FP32_OPS or (op_type == "Mul" and same_inputs):
        return _FP32
    activations = [p for p in inputs if p is not None]
    if activations and all(p == _FP32 for p in activations):
        return _FP32
    return _FP16


def _is_float_constant(state: _State, name: str) -> bool:
    init = state.initializers.get(name)
    return init is not None and init.data_type == FLOAT


def _float_inputs(state: _State, node: onnx.NodeProto) -> list[int]:
    """Indices of the node's inputs that carry float data (activations or constants)."""
    found = []
    for i, name in enumerate(node.input):
        if not name or (node.op_type, i) in _INDEX_INPUTS:
            continue
        if name in state.precision or _is_float_constant(state, name):
            found.append(i)
    return found


def _convert_node(state: _State, node: onnx.NodeProto) -> None:
    if node.op_type in NON_FLOAT_OUTPUT:
        state.non_float.update(node.output)
        state.nodes.append(node)
        return
    if node.op_type == "Cast":
        # a cast to float starts a float32 chain; any other cast ends one
        to = helper.get_attribute_value(next(a for a in node.attribute if a.name == "to"))
        if to == FLOAT:
            state.precision[node.output[0]] = _FP32
        else:
            state.non_float.add(node.output[0])
        state.nodes.append(node)
        return
    if node.op_type in ("Constant", "ConstantOfShape"):
        value = next((a for a in node.attribute if a.name == "value"), None)
        is_float = value is not None and value.t.data_type == FLOAT
        if node.op_type == "ConstantOfShape" and value is None:
            is_float = True  # the default value is a float32 zero
        if is_float:
            state.precision[node.output[0]] = _FP32
        else:
            state.non_float.update(node.output)
        state.nodes.append(node)
        return

    float_inputs = _float_inputs(state, node)
    if not float_inputs:
        # integer-only node (position ids, shapes): untouched
        state.non_float.update(node.output)
        state.nodes.append(node)
        return
    input_precisions = [state.precision.get(node.input[i]) for i in float_inputs]
    same = len(node.input) == 2 and node.input[0] == node.input[1]
    precision = node_precision(node.op_type, input_precisions, same)

    new_node = onnx.NodeProto()
    new_node.CopyFrom(node)
    for i in float_inputs:
        new_node.input[i] = _input_as(state, node.input[i], precision)
    if node.op_type == "LayerNormalization" and precision == _FP16:
        # accumulate mean and variance in float32 (the ONNX default, made explicit)
        _set_attribute(new_node, "stash_type", 1)

    if node.op_type in EXACT_REDUCTIONS and precision == _FP16:
        # reduce in float16 (exact), hand float32 to what follows
        half = node.output[0] + "__fp16"
        new_node.output[0] = half
        state.nodes.append(new_node)
        state.nodes.append(helper.make_node("Cast", [half], [node.output[0]], to=FLOAT))
        state.precision[node.output[0]] = _FP32
        return
    state.nodes.append(new_node)
    for out in node.output:
        if out:
            state.precision[out] = precision


def _input_as(state: _State, name: str, precision: str) -> str:
    """The name of ``name`` in ``precision``: a converted weight or a (shared) cast."""
    if _is_float_constant(state, name):
        return _weight_as(state, name, precision)
    if state.precision[name] == precision:
        return name
    key = (name, precision)
    if key not in state.casts:
        cast = f"{name}__to_{precision}"
        to = FLOAT16 if precision == _FP16 else FLOAT
        state.nodes.append(helper.make_node("Cast", [name], [cast], name=cast, to=to))
        state.casts[key] = cast
    return state.casts[key]


def _weight_as(state: _State, name: str, precision: str) -> str:
    key = (name, precision)
    if key not in state.weights:
        array = numpy_helper.to_array(state.initializers[name])
        new_name = name if not any(k[0] == name for k in state.weights) else f"{name}__{precision}"
        if precision == _FP16:
            # clip, so that a -1e9 fill stays finite and 0 * fill stays 0
            array = np.clip(array, -FP16_MAX, FP16_MAX).astype(np.float16)
        state.new_initializers.append(numpy_helper.from_array(array, new_name))
        state.weights[key] = new_name
    return state.weights[key]


def _convert_output(
    state: _State, out: onnx.ValueInfoProto, half_outputs: Collection[str]
) -> onnx.ValueInfoProto:
    if out.type.tensor_type.elem_type != FLOAT or out.name not in state.precision:
        return out
    want = _FP16 if out.name in half_outputs else _FP32
    have = state.precision[out.name]
    if have != want:
        # rename the producer's tensor and cast it into the output name
        inner = out.name + f"__{have}"
        for node in state.nodes:
            for i, name in enumerate(node.input):
                if name == out.name:
                    node.input[i] = inner
            for i, name in enumerate(node.output):
                if name == out.name:
                    node.output[i] = inner
        to = FLOAT16 if want == _FP16 else FLOAT
        state.nodes.append(
            helper.make_node("Cast", [inner], [out.name], name=f"{out.name}__cast", to=to)
        )
    dims = [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]
    elem = FLOAT16 if want == _FP16 else FLOAT
    return helper.make_tensor_value_info(out.name, elem, dims)


def _set_attribute(node: onnx.NodeProto, name: str, value: int) -> None:
    for attr in node.attribute:
        if attr.name == name:
            attr.i = value
            return
    node.attribute.append(helper.make_attribute(name, value))
