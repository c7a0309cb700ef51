"""The ONNX Runtime CPU target's rewrite of an exported ``Variant.ORT`` graph.

ONNX Runtime 1.32's CPU ``SkipLayerNormalization`` kernel is slower than the operators it
fuses: 3.9 ms on a (4096, 384) tensor against 1.06 ms for Add + Add + LayerNormalization
(bench/README.md). Its CUDA kernel is the fast one, so the builders keep emitting the fused
op and the CPU target (its own engine cache entry) spells it out again here; the CPU
session also disables ORT's ``SkipLayerNormFusion`` (engines/ort_engine.py), which would
otherwise put it back.
"""

from __future__ import annotations

import onnx
from onnx import helper

from tei_ort.exporters.graph import MS_DOMAIN


def unfuse_skip_layer_norm(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace each ``SkipLayerNormalization`` by Add (bias), Add (skip), LayerNormalization.

    In place; returns ``model``. A node whose mean / inverse-std outputs are read stays
    fused (LayerNormalization gives them in another shape). Weights are not touched, so a
    graph whose tensors live in external data can be rewritten without loading them.
    """
    graph = model.graph
    read = {name for node in graph.node for name in node.input}
    read |= {out.name for out in graph.output}
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        outputs = list(node.output) + [""] * (4 - len(node.output))
        if (
            node.op_type != "SkipLayerNormalization"
            or node.domain != MS_DOMAIN
            or any(name and name in read for name in outputs[1:3])
        ):
            nodes.append(node)
            continue
        x, skip, gamma = node.input[0], node.input[1], node.input[2]
        beta = node.input[3] if len(node.input) > 3 else ""
        bias = node.input[4] if len(node.input) > 4 else ""
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-12)
        p = node.name or outputs[0]
        total = outputs[3] if outputs[3] else f"{p}.sum"
        if bias:
            nodes.append(helper.make_node("Add", [x, bias], [f"{p}.biased"], name=f"{p}.bias"))
            x = f"{p}.biased"
        nodes.append(helper.make_node("Add", [x, skip], [total], name=f"{p}.skip"))
        ln_inputs = [total, gamma] + ([beta] if beta else [])
        nodes.append(
            helper.make_node(
                "LayerNormalization", ln_inputs, [outputs[0]], name=p, axis=-1, epsilon=eps
            )
        )
    del graph.node[:]
    graph.node.extend(nodes)
    return model
