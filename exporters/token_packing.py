"""Token packing for the ONNX Runtime CPU target: per-token layers skip the padding.

A batch of texts of different lengths is padded to its longest, and every linear layer,
norm and activation then runs on the padding too. On the CPU that is wasted time in
proportion to the padding: the server batches whatever requests are waiting, short and
long together. This pass rewrites an exported graph so that tensors laid out as
(B, T, ...) are carried as (N, ...) between attention layers, N being the real tokens of
the batch, and are scattered back to (B, T, ...) only where an operator needs the padded
layout (attention, rotary embeddings, the heads, the graph outputs).

all-MiniLM-L6-v2, 2 threads (bench/README.md): batches of 32 short texts in arrival order
467 -> 617 texts/s, mixed lengths 47-95 -> 85-126 texts/s; batches already sorted by
length unchanged within noise.

Which tensors are per token comes from ONNX Runtime's symbolic shape inference: a tensor
whose shape starts with the attention mask's (batch, sequence) symbols. An operator is run
packed only when it is known to act on each token alone (elementwise, last-axis norms and
reductions, MatMul by a constant matrix) and each of its other inputs broadcasts over
tokens; anything else gets the padded tensor back, so an unknown operator costs speed,
never correctness. Padded positions of an unpacked tensor hold a copy of a real token
(every reader masks them, as it masks the padding's own values in the unpacked graph).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper

from tei_ort.exporters.graph import MS_DOMAIN

logger = logging.getLogger(__name__)

MASK_INPUT = "attention_mask"

# operators that act on each position alone (given the attribute checks below)
_ELEMENTWISE = frozenset(
    {"Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Erf", "Tanh", "Relu", "Sigmoid", "Cast"}
)
_MS_ELEMENTWISE = frozenset({"BiasGelu", "FastGelu", "Gelu", "QuickGelu"})
_LAST_AXIS_NORMS = frozenset({"LayerNormalization", "SimplifiedLayerNormalization"})
_MS_LAST_AXIS_NORMS = frozenset({"SkipLayerNormalization", "SkipSimplifiedLayerNormalization"})
_LAST_AXIS_REDUCTIONS = frozenset({"ReduceMean", "ReduceSum", "ReduceMax", "Softmax"})

Shape = list[int | str | None]


def _inferred_shapes(model: onnx.ModelProto) -> dict[str, Shape]:
    """Tensor shapes (ints, or symbols such as "batch") of ``model``; {} if none could be had.

    ORT's symbolic shape inference runs in a child process: it imports sympy (~1 s and
    ~270 MB measured) that a server building its engine at start-up would otherwise keep.
    """
    done = subprocess.run(
        [sys.executable, "-m", "tei_ort.exporters.token_packing"],
        input=_skeleton(model).SerializeToString(),
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:]
        logger.warning("token packing skipped: shape inference failed: %s", " ".join(tail))
        return {}
    shapes: dict[str, Shape] = json.loads(done.stdout)
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def _symbolic_shapes(skeleton: onnx.ModelProto) -> dict[str, Shape]:
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    # infer_shapes() refuses a graph with any operator it cannot type (GroupQueryAttention)
    # and then writes a file into the working directory; the steps it runs give the
    # shapes that could be inferred, which is all this pass needs (an unknown shape only
    # stops the packing there)
    inference = SymbolicShapeInference(
        int_max=2**31 - 1, auto_merge=True, guess_output_rank=False, verbose=0
    )
    inference._preprocess(skeleton)
    while inference.run_:
        inference._infer_impl()
    inferred = inference.out_mp_
    shapes: dict[str, Shape] = {}
    infos = [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
    for info in infos:
        if info.type.HasField("tensor_type") and info.type.tensor_type.HasField("shape"):
            dims = info.type.tensor_type.shape.dim
            shapes[info.name] = [
                d.dim_param if d.HasField("dim_param") else (d.dim_value or None) for d in dims
            ]
    return shapes


# initializers up to this many elements keep their values for shape inference (shapes,
# axes, slice bounds); larger ones (weights) are given to it by shape alone
_SHAPE_CONSTANT_ELEMENTS = 64


def _skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` without its weights: each large initializer becomes a typed graph input.

    What the child process needs is the graph and the shapes; sending it the weights too
    would copy the whole checkpoint through a pipe (and shape inference copies its model
    once more).
    """
    graph = model.graph
    weights = [t for t in graph.initializer if int(np.prod(t.dims)) > _SHAPE_CONSTANT_ELEMENTS]
    skeleton = onnx.ModelProto()
    skeleton.ir_version = model.ir_version
    skeleton.opset_import.extend(model.opset_import)
    skeleton.graph.name = graph.name
    skeleton.graph.node.extend(graph.node)
    skeleton.graph.input.extend(graph.input)
    skeleton.graph.output.extend(graph.output)
    big = {t.name for t in weights}
    skeleton.graph.initializer.extend(t for t in graph.initializer if t.name not in big)
    skeleton.graph.input.extend(
        helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in weights
    )
    return skeleton


def _attribute(node: onnx.NodeProto, name: str) -> onnx.AttributeProto | None:
    return next((a for a in node.attribute if a.name == name), None)


def _acts_per_token(node: onnx.NodeProto, rank: int) -> bool:
    """Whether ``node`` treats each position of a rank-``rank`` (B, T, ...) input alone."""
    op, domain = node.op_type, node.domain or ""
    if domain == "" and op in _ELEMENTWISE:
        return True
    if domain == MS_DOMAIN and (op in _MS_ELEMENTWISE or op in _MS_LAST_AXIS_NORMS):
        return True
    if op in _LAST_AXIS_NORMS:
        axis = _attribute(node, "axis")
        return axis is None or axis.i in (-1, rank - 1)
    if domain == "" and op in _LAST_AXIS_REDUCTIONS:
        axis = _attribute(node, "axis" if op == "Softmax" else "axes")
        if op == "Softmax":
            return axis is None or axis.i in (-1, rank - 1)
        keep = _attribute(node, "keepdims")
        last = axis is not None and list(axis.ints) in ([-1], [rank - 1])
        return last and len(node.input) == 1 and (keep is None or keep.i == 1)
    return domain == "" and op == "MatMul"


class _Packer:
    """Rewrites the nodes of one graph in order; see :func:`pack_tokens`."""

    def __init__(self, model: onnx.ModelProto, shapes: dict[str, Shape]) -> None:
        self.graph = model.graph
        self.shapes = shapes
        self.batch, self.sequence = shapes[MASK_INPUT][:2]
        self.initializers = {init.name for init in model.graph.initializer}
        self.packed: dict[str, str] = {}  # padded name -> its (N, ...) name
        self.missing: set[str] = set()  # padded names whose producer now writes (N, ...)
        self.added: list[onnx.TensorProto] = []
        self.nodes: list[onnx.NodeProto] = []
        self.packed_ops = 0

    def per_token(self, name: str) -> bool:
        shape = self.shapes.get(name)
        return (
            shape is not None
            and len(shape) >= 2
            and shape[0] == self.batch
            and shape[1] == self.sequence
            and all(isinstance(d, int) for d in shape[2:])
        )

    def broadcasts_over_tokens(self, name: str, packed_rank: int) -> bool:
        """A non-token input that broadcasts the same way against (N, ...) as (B, T, ...)."""
        shape = self.shapes.get(name)
        if shape is None or len(shape) > packed_rank:
            return False
        return all(d == 1 for d in shape[:-1])

    def feature_dims(self, name: str) -> list[int]:
        """The dimensions after (B, T) of a per-token tensor."""
        return [int(d) for d in self.shapes[name][2:]]  # type: ignore[arg-type]

    # -- layout changes ----------------------------------------------------------------

    def pack(self, name: str) -> str:
        """(B, T, ...) -> (N, ...), once per tensor."""
        if name not in self.packed:
            flat_shape = self.const(f"{name}.flat_shape", [-1, *self.feature_dims(name)])
            flat, out = f"{name}.tokens_flat", f"{name}.packed"
            self.nodes.append(helper.make_node("Reshape", [name, flat_shape], [flat]))
            self.nodes.append(helper.make_node("Gather", [flat, "pack.index"], [out], axis=0))
            self.packed[name] = out
        return self.packed[name]

    def unpack(self, name: str) -> None:
        """Write the padded tensor ``name`` from its packed form, once."""
        if name not in self.missing:
            return
        tail = self.const(f"{name}.rest_shape", self.feature_dims(name))
        shape, flat = f"{name}.padded_shape", f"{name}.padded_flat"
        self.nodes += [
            helper.make_node("Gather", [self.packed[name], "pack.inverse"], [flat], axis=0),
            helper.make_node("Concat", ["pack.batch_sequence", tail], [shape], axis=0),
            helper.make_node("Reshape", [flat, shape], [name]),
        ]
        self.missing.discard(name)

    def const(self, name: str, values: list[int]) -> str:
        self.added.append(numpy_helper.from_array(np.array(values, np.int64), name))
        return name

    def preamble(self) -> None:
        """Token index (N,) into the flattened (B*T,) batch, and its inverse (B*T,)."""
        self.const("pack.minus_one", [-1])
        self.const("pack.zero", [0])
        self.added.append(numpy_helper.from_array(np.array(1, np.int64), "pack.one"))
        self.added.append(numpy_helper.from_array(np.array(0, np.int64), "pack.axis"))
        mask = helper.make_node("Cast", [MASK_INPUT], ["pack.mask"], to=onnx.TensorProto.INT64)
        self.nodes += [
            mask,
            helper.make_node("Reshape", ["pack.mask", "pack.minus_one"], ["pack.mask_flat"]),
            helper.make_node("NonZero", ["pack.mask_flat"], ["pack.nonzero"]),  # (1, N)
            helper.make_node("Squeeze", ["pack.nonzero", "pack.zero"], ["pack.index"]),
            # a padded position points at a real token before it (or at the last one, -1):
            # any real row will do, the readers mask padding
            helper.make_node("CumSum", ["pack.mask_flat", "pack.axis"], ["pack.count"]),
            helper.make_node("Sub", ["pack.count", "pack.one"], ["pack.inverse"]),
            helper.make_node("Shape", [MASK_INPUT], ["pack.batch_sequence"]),
        ]

    # -- nodes -----------------------------------------------------------------------

    def runs_packed(self, node: onnx.NodeProto) -> bool:
        token_inputs = [name for name in node.input if name and self.per_token(name)]
        if not token_inputs or not all(self.per_token(out) for out in node.output if out):
            return False
        rank = len(self.shapes[token_inputs[0]])
        if not _acts_per_token(node, rank):
            return False
        if node.op_type == "MatMul":
            weight = node.input[1]
            # a constant (K, M) matrix, applied to each token's row
            return (
                node.input[0] in token_inputs
                and weight in self.initializers
                and len(self.shapes[weight]) == 2
            )
        others = [n for n in node.input if n and n not in token_inputs]
        if not all(self.broadcasts_over_tokens(n, rank - 1) for n in others):
            return False
        # start packing at a MatMul; elsewhere continue what is packed already
        return any(n in self.packed for n in token_inputs)

    def rewrite(self, node: onnx.NodeProto) -> None:
        if self.runs_packed(node):
            rank = len(self.shapes[next(n for n in node.input if n and self.per_token(n))])
            for i, name in enumerate(node.input):
                if name and self.per_token(name):
                    node.input[i] = self.pack(name)
            for i, name in enumerate(node.output):
                if name:
                    self.packed[name] = node.output[i] = f"{name}.packed"
                    self.missing.add(name)
            # a last axis counted from the front would be past the end of (N, ...)
            axis, axes = _attribute(node, "axis"), _attribute(node, "axes")
            if axis is not None and axis.i == rank - 1:
                axis.i = -1
            if axes is not None and list(axes.ints) == [rank - 1]:
                axes.ints[:] = [-1]
            self.packed_ops += 1
        else:
            for name in node.input:
                self.unpack(name)
        self.nodes.append(node)

    def finish(self) -> None:
        for out in self.graph.output:
            self.unpack(out.name)


def pack_tokens(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite ``model`` (in place; also returned) to run per-token layers on real tokens.

    A graph without an ``attention_mask`` input, or with nothing to pack, is returned as it
    was. Initializers are read for their shapes only, so a graph whose weights live in
    external data can be rewritten without loading them.
    """
    if MASK_INPUT not in {i.name for i in model.graph.input}:
        return model
    shapes = _inferred_shapes(model)
    if MASK_INPUT not in shapes:
        return model
    packer = _Packer(model, shapes)
    packer.preamble()
    for node in model.graph.node:
        packer.rewrite(node)
    packer.finish()
    if not packer.packed_ops:
        return model
    del model.graph.node[:]
    model.graph.node.extend(packer.nodes)
    model.graph.initializer.extend(packer.added)
    del model.graph.value_info[:]
    logger.debug("token packing: %d operators run on real tokens only", packer.packed_ops)
    return model


if __name__ == "__main__":  # the child process of _inferred_shapes
    json.dump(_symbolic_shapes(onnx.load_from_string(sys.stdin.buffer.read())), sys.stdout)
