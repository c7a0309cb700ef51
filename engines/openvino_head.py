"""SPLADE's head cut off the encoder, to run in float32 beside a bf16 encoder.

SPLADE's vector is log(1 + relu(max over tokens of the MLM logits)): in bf16 the
vocabulary projection moves logits near zero across the relu, and the vectors reach only a
min cosine of ~0.9997 to float32 on real text. The encoder alone in bf16, with the head
(transform, norm, vocabulary projection, reduction) in float32, keeps >= 0.9999
(tests/unit/test_bf16_accuracy.py). OpenVINO's CPU plugin has no per-node precision that
holds here, so the graph is cut in two models, each compiled at its own precision.
"""

from __future__ import annotations

from typing import Any

from tei_ort.engines.base import OutputName
from tei_ort.engines.openvino_runtime import import_openvino

#: the head model's input: the encoder's last hidden state (B, T, H)
HIDDEN_INPUT = "hidden_states"


def _has_constant_weight(op: Any) -> bool:
    """A MatMul of activations by a weight (not attention's activations by activations)."""
    if op.get_type_name() != "MatMul":
        return False
    source = op.input_value(1).get_node()
    while source.get_type_name() in ("Convert", "Transpose", "Reshape"):
        source = source.input_value(0).get_node()
    return bool(source.get_type_name() == "Constant")


def split_sparse_head(model: Any) -> tuple[Any, Any] | None:
    """(encoder, head) of a SPLADE graph (``sparse_embedding`` output), else None.

    The head starts at the MLM transform, the second-last weight MatMul (the last is the
    vocabulary projection); it takes the encoder's output and ``attention_mask``.
    """
    ov = import_openvino()
    import openvino.opset13 as ops

    results = model.get_results()
    if len(results) != 1:
        return None
    if OutputName.SPARSE_EMBEDDING.value not in results[0].input_value(0).get_names():
        return None
    weights = [op for op in model.get_ordered_ops() if _has_constant_weight(op)]
    if len(weights) < 2:
        return None
    cut = weights[-2].input_value(0)  # (B, T, H) float32
    consumers = list(cut.get_target_inputs())
    encoder = ov.Model([cut], model.get_parameters(), "encoder")
    hidden = ops.parameter(cut.get_partial_shape(), cut.get_element_type(), name=HIDDEN_INPUT)
    hidden.output(0).set_names({HIDDEN_INPUT})
    for target in consumers:
        target.replace_source_output(hidden.output(0))
    masks = [p for p in model.get_parameters() if "attention_mask" in p.output(0).get_names()]
    head = ov.Model(list(results), [hidden, *masks], "head")
    return encoder, head
