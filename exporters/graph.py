"""A small helper over ``onnx.helper`` for building graphs node by node.

Builders call ``g.op("MatMul", a, b)`` and get the output name back, so a layer reads
like the math it computes. Initializers are added with ``g.weight(...)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

OPSET = 17  # LayerNormalization is in 17; TensorRT 8.6+ parses it
MS_DOMAIN = "com.microsoft"


# ONNX Runtime memory-maps external tensors that start on an allocation boundary
_EXTERNAL_ALIGNMENT = 64 * 1024


class ExternalData:
    """Initializers written to one file beside the model as soon as they are added.

    A graph over protobuf's 2 GB limit must keep its tensors outside the ModelProto; writing
    each one straight away also means the exporter never holds the whole model in memory.
    Tensors under ``min_bytes`` stay inline (constants, shapes).
    """

    def __init__(self, path: Path, min_bytes: int = 1024) -> None:
        self.path = path
        self.min_bytes = min_bytes
        self._file: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed by close()
        self.bytes_written = 0

    def tensor(self, name: str, array: NDArray[Any]) -> onnx.TensorProto:
        array = np.require(array, requirements="C")
        offset = -self._file.tell() % _EXTERNAL_ALIGNMENT + self._file.tell()
        self._file.seek(offset)
        self._file.write(array.data.cast("B"))  # the array's own buffer, not a copy
        self.bytes_written = self._file.tell()
        tensor = onnx.TensorProto()
        tensor.name = name
        tensor.data_type = helper.np_dtype_to_tensor_dtype(array.dtype)
        tensor.dims.extend(array.shape)
        tensor.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (
            ("location", self.path.name),
            ("offset", str(offset)),
            ("length", str(array.nbytes)),
        ):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        return tensor

    def close(self) -> None:
        self._file.close()


class GraphBuilder:
    def __init__(
        self,
        name: str,
        external: ExternalData | None = None,
        on_weight: Callable[[float], None] | None = None,
    ) -> None:
        self.name = name
        self.external = external
        self.on_weight = on_weight  # told each weight's bytes: the export's progress
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._counter = 0
        self._constants: dict[tuple[str, bytes, tuple[int, ...]], str] = {}
        self.uses_ms_domain = False

    def fresh(self, hint: str) -> str:
        self._counter += 1
        return f"{hint}_{self._counter}"

    def input(self, name: str, elem_type: int, shape: Sequence[int | str]) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, list(shape)))
        return name

    def output(self, name: str, elem_type: int, shape: Sequence[int | str]) -> None:
        self.outputs.append(helper.make_tensor_value_info(name, elem_type, list(shape)))

    def weight(self, name: str, array: NDArray[Any]) -> str:
        if self.on_weight is not None:
            self.on_weight(array.nbytes)
        if self.external is not None and array.nbytes >= self.external.min_bytes:
            self.initializers.append(self.external.tensor(name, array))
        else:
            self.initializers.append(
                numpy_helper.from_array(np.require(array, requirements="C"), name)
            )
        return name

    def const(self, value: Any, dtype: type = np.int64) -> str:
        """A small constant initializer, shared between nodes that use the same value."""
        array: NDArray[Any] = np.asarray(value, dtype=dtype)
        key = (array.dtype.str, array.tobytes(), tuple(array.shape))
        if key not in self._constants:
            self._constants[key] = self.weight(self.fresh("const"), array)
        return self._constants[key]

    def op(
        self,
        op_type: str,
        *inputs: str,
        domain: str = "",
        outputs: int = 1,
        name: str | None = None,
        **attrs: Any,
    ) -> str:
        """Add one node; returns its (first) output name."""
        return self.op_multi(op_type, *inputs, domain=domain, outputs=outputs, name=name, **attrs)[
            0
        ]

    def op_multi(
        self,
        op_type: str,
        *inputs: str,
        domain: str = "",
        outputs: int = 1,
        name: str | None = None,
        **attrs: Any,
    ) -> list[str]:
        base = name or self.fresh(op_type.lower())
        out_names = [base] if outputs == 1 else [f"{base}_out{i}" for i in range(outputs)]
        if domain == MS_DOMAIN:
            self.uses_ms_domain = True
        self.nodes.append(
            helper.make_node(op_type, list(inputs), out_names, name=base, domain=domain, **attrs)
        )
        return out_names

    def build(self, producer: str) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, self.name, self.inputs, self.outputs, initializer=self.initializers
        )
        opsets = [helper.make_opsetid("", OPSET)]
        if self.uses_ms_domain:
            opsets.append(helper.make_opsetid(MS_DOMAIN, 1))
        model = helper.make_model(graph, opset_imports=opsets, producer_name=producer)
        model.ir_version = 8  # readable by every onnxruntime >= 1.14 and TensorRT 8.6+
        return model


INT64 = TensorProto.INT64
FLOAT = TensorProto.FLOAT
FLOAT16 = TensorProto.FLOAT16
