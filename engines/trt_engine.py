"""A TensorRT engine behind the same Engine interface as ONNX Runtime.

The serialized engine (``model.plan``, built by ``exporters.tensorrt``) holds one
optimization profile per sequence-length segment. A run picks the profile that covers the
batch's shape (:func:`tei_ort.engines.trt_profiles.select_profile`; a shape outside every profile is
an error, never a rebuild), copies the inputs into device buffers allocated once for the
largest profile, runs ``execute_async_v3`` on the engine's stream and copies back only the
graph output. ``tensorrt`` and the CUDA runtime are loaded when the engine is created.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tei_ort.engines import _cudart
from tei_ort.engines.base import Engine, EngineInputs, OutputName
from tei_ort.engines.errors import EngineError
from tei_ort.engines.trt_profiles import ProfilePlan, import_tensorrt, select_profile

logger = logging.getLogger(__name__)


def buffer_elements(plan: ProfilePlan, output: OutputName, row_elements: int) -> tuple[int, int]:
    """(elements per (B, T) input, elements of the output) for the largest profile."""
    tokens = max(r.max[0] * r.max[1] for r in plan.ranges)
    if output is OutputName.LAST_HIDDEN_STATE:
        return tokens, tokens * row_elements
    return tokens, plan.max_batch * row_elements


class TrtEngine(Engine):
    compute_type = "tensorrt"

    def __init__(
        self, plan_path: Path, *, plan: ProfilePlan, device_id: int = 0, dtype: str = "float16"
    ) -> None:
        self.dtype = dtype
        trt = import_tensorrt()
        # the engine's stream and buffers live on device_id; run() may be on another thread
        self._device = _cudart.ThreadDevice(device_id)
        self._device.ensure()
        self._trt = trt
        self.plan = plan
        self.max_batch_size = plan.max_batch
        trt_logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(trt_logger)
        engine = self._runtime.deserialize_cuda_engine(plan_path.read_bytes())
        if engine is None:
            raise EngineError(
                f"TensorRT {trt.__version__} cannot load {plan_path}: it was built by another "
                "TensorRT version or for another GPU; delete the entry or rebuild it"
            )
        self._engine = engine
        if engine.num_optimization_profiles != len(plan.ranges):
            raise EngineError(
                f"{plan_path} has {engine.num_optimization_profiles} profiles, the settings "
                f"ask for {len(plan.ranges)}; rebuild it with `tei-ort build --target trt`"
            )
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self._inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in self._inputs]
        if len(outputs) != 1 or outputs[0] not in {o.value for o in OutputName}:
            raise EngineError(f"{plan_path}: unexpected engine outputs {outputs}")
        self.output_name = OutputName(outputs[0])
        self._dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        out_dims = list(engine.get_tensor_shape(outputs[0]))
        skip = 2 if self.output_name is OutputName.LAST_HIDDEN_STATE else 1
        row_elements = int(np.prod([d for d in out_dims[skip:]], dtype=np.int64))
        if row_elements <= 0:
            raise EngineError(f"{plan_path}: output dims {out_dims} are not fixed past (B, T)")
        input_elements, output_total = buffer_elements(plan, self.output_name, row_elements)

        self._stream = _cudart.Stream()
        self._buffers = {
            n: _cudart.DeviceBuffer(input_elements * self._dtypes[n].itemsize) for n in self._inputs
        }
        self._buffers[outputs[0]] = _cudart.DeviceBuffer(
            output_total * self._dtypes[outputs[0]].itemsize
        )
        self._context: Any = engine.create_execution_context()
        if self._context is None:
            raise EngineError("TensorRT could not create an execution context (GPU memory?)")
        for name, buffer in self._buffers.items():
            self._context.set_tensor_address(name, buffer.ptr)
        self._profile = -1

    def run(self, inputs: EngineInputs) -> NDArray[np.float32]:
        self._device.ensure()  # the CUDA runtime's current device is per host thread
        batch, seq_len = inputs.batch_size, inputs.seq_len
        profile = select_profile(self.plan, batch, seq_len)  # refuses, never rebuilds
        context = self._context
        if profile != self._profile:
            if not context.set_optimization_profile_async(profile, self._stream.handle):
                raise EngineError(f"TensorRT could not switch to profile {profile}")
            self._profile = profile
        feeds = {
            "input_ids": inputs.input_ids,
            "attention_mask": inputs.attention_mask,
            "token_type_ids": inputs.token_type_ids,
        }
        for name in self._inputs:
            value = feeds.get(name)
            array = np.zeros((batch, seq_len), np.int64) if value is None else value
            array = np.ascontiguousarray(array, dtype=self._dtypes[name])
            _cudart.copy_to_device(self._buffers[name].ptr, array, self._stream)
            context.set_input_shape(name, (batch, seq_len))
        out_name = self.output_name.value
        if not context.execute_async_v3(self._stream.handle):
            raise EngineError(f"TensorRT failed on a {batch} x {seq_len} batch")
        shape = tuple(context.get_tensor_shape(out_name))
        host = np.empty(shape, dtype=self._dtypes[out_name])
        _cudart.copy_to_host(host, self._buffers[out_name].ptr, self._stream)
        self._stream.synchronize()
        return host.astype(np.float32, copy=False)

    def close(self) -> None:
        self._device.ensure()
        self._stream.synchronize()
        for buffer in self._buffers.values():
            buffer.free()
        self._stream.destroy()
