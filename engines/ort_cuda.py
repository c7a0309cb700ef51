"""ONNX Runtime on an NVIDIA GPU with IOBinding: inputs go in once, one output comes back.

Per sequence-length bucket the engine keeps device buffers for the (B, T) inputs, sized
for the largest batch the budget allows at that length, and one output buffer sized for
the largest output of any bucket. A run copies the padded batch into its bucket's buffers
(one host-to-device copy per input), binds views of the buffers with the batch's shape,
runs, and copies back only the graph output of that shape (hidden states, logits or SPLADE
vectors; float16 hidden states are upcast on the host, half the bytes over the bus).

With ``cuda_graphs`` the batch is padded to a power of two (up to the bucket's limit) and
each (bucket, batch size) gets its own captured CUDA graph (ONNX Runtime's
``gpu_graph_id``); the buffers never move, which graph replay requires.

The shape logic (:func:`run_shape`, :func:`output_elements`) is pure and tested on the CPU;
``device="cpu"`` runs the same binding code on ONNX Runtime's CPU provider.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from tei_ort.engines.base import EngineInputs, OutputName
from tei_ort.engines.errors import EngineError
from tei_ort.engines.ort_engine import OrtEngine
from tei_ort.engines.shapes import BatchLimits, graph_batch

logger = logging.getLogger(__name__)

_NUMPY_TYPES: Mapping[str, type[np.generic]] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
}


@dataclass(frozen=True)
class RunShape:
    """How one batch runs: its bucket, the rows the graph computes and the graph id."""

    bucket: int  # padded sequence length the graph runs at
    rows: int  # batch rows the graph runs (>= the batch; more when padded for a graph)
    graph_id: int  # ONNX Runtime gpu_graph_id; 0: no CUDA graph


def run_shape(limits: BatchLimits, batch: int, seq_len: int, *, cuda_graphs: bool) -> RunShape:
    """The bucket and row count for a (batch, seq_len) input; refuses what cannot fit."""
    if seq_len < 1 or seq_len > limits.longest_bucket:
        raise EngineError(
            f"a sequence of {seq_len} tokens is outside the engine's buckets "
            f"(1..{limits.longest_bucket})"
        )
    bucket = limits.bucket_of(seq_len)
    limit = limits.max_batch(bucket)
    if batch < 1 or batch > limit:
        raise EngineError(
            f"a batch of {batch} x {bucket} tokens is over the engine's buffers "
            f"({limit} rows at that length for --max-batch-tokens {limits.max_batch_tokens})"
        )
    if not cuda_graphs:
        return RunShape(bucket, batch, 0)
    rows = graph_batch(batch, limit)
    buckets = limits.buckets()
    # one id per (bucket, power-of-two rows); ids start at 1 (0 is ONNX Runtime's default)
    # rows is a power of two or the bucket's limit (the next power would be over it), so
    # (rows - 1).bit_length() tells every possible row count apart
    graph_id = 1 + buckets.index(bucket) * 64 + (rows - 1).bit_length()
    return RunShape(bucket, rows, graph_id)


def output_elements(limits: BatchLimits, output: OutputName, row_elements: int) -> int:
    """Elements of the shared output buffer: the largest output any bucket produces."""
    if output is OutputName.LAST_HIDDEN_STATE:  # (B, T, H): per token
        return limits.max_tokens() * row_elements
    rows = max(limits.max_batch(b) for b in limits.buckets())  # (B, L) / (B, V): per row
    return rows * row_elements


class _Bucket:
    """Device buffers of one bucket's (rows, T) inputs and their host staging arrays."""

    def __init__(self, names: list[str], rows: int, seq_len: int, device: str, device_id: int):
        self.stage = {n: np.zeros((rows, seq_len), dtype=np.int64) for n in names}
        self.device = {
            n: ort.OrtValue.ortvalue_from_numpy(self.stage[n], device, device_id) for n in names
        }


class OrtCudaEngine(OrtEngine):
    """ONNX Runtime's CUDA provider (or ``device="cpu"`` for tests) with IOBinding."""

    def __init__(
        self,
        model_path: Path,
        *,
        limits: BatchLimits,
        provider_options: dict[str, str] | None = None,
        device: str = "cuda",
        device_id: int = 0,
        cuda_graphs: bool = False,
        pad_batches: bool | None = None,
        optimized_path: Path | None = None,
        threads: int | None = None,
        dtype: str = "float16",
    ) -> None:
        provider = "CUDAExecutionProvider" if device == "cuda" else "CPUExecutionProvider"
        options = dict(provider_options or {})
        if device == "cuda":
            options.setdefault("device_id", str(device_id))
            options["enable_cuda_graph"] = "1" if cuda_graphs else "0"
            options.setdefault("use_tf32", "0")  # float32 is float32 (providers.ort_options)
        try:
            super().__init__(
                model_path,
                providers=(provider,),
                provider_options=(options,),
                threads=threads,
                optimized_path=optimized_path,
                dtype=dtype,
            )
        except EngineError as exc:
            if cuda_graphs:
                raise EngineError(
                    f"{exc}; CUDA graphs need every node on the GPU: start without --cuda-graphs"
                ) from exc
            raise
        self.device = device
        self.device_id = device_id
        self.limits = limits
        self.cuda_graphs = cuda_graphs and device == "cuda"
        # CUDA graphs need fixed shapes, so batches are padded; tests pad on the CPU too
        self.pad_batches = self.cuda_graphs if pad_batches is None else pad_batches
        self.max_batch_size = max(limits.max_batch(b) for b in limits.buckets())

        graph_inputs = [i.name for i in self.session.get_inputs()]
        self._input_names = set(graph_inputs)
        self._inputs = graph_inputs
        out = self.session.get_outputs()[0]
        self._out_name = out.name
        self._out_type = _NUMPY_TYPES.get(out.type)
        if self._out_type not in (np.float32, np.float16):
            raise EngineError(f"{model_path}: output {out.name} has type {out.type}")
        self._row_shape = self._trailing_dims(out.shape)
        self._output = ort.OrtValue.ortvalue_from_shape_and_type(
            [output_elements(limits, self.output_name, int(np.prod(self._row_shape)))],
            self._out_type,
            device,
            device_id,
        )
        self._buckets: dict[int, _Bucket] = {}
        self._binding = self.session.io_binding()

    def _trailing_dims(self, shape: list[int | str | None]) -> tuple[int, ...]:
        """The output's dims after (B,) or (B, T); a symbolic one is found by a probe run."""
        skip = 2 if self.output_name is OutputName.LAST_HIDDEN_STATE else 1
        dims = shape[skip:]
        if all(isinstance(d, int) for d in dims):
            return tuple(int(d) for d in dims)  # type: ignore[arg-type]
        probe = {
            name: np.ones((1, 1), dtype=np.int64)
            if name == "attention_mask"
            else np.zeros((1, 1), dtype=np.int64)
            for name in self._inputs
        }
        result = self.session.run([self._out_name], probe)[0]
        return tuple(int(d) for d in result.shape[skip:])

    def _bucket(self, seq_len: int) -> _Bucket:
        found = self._buckets.get(seq_len)
        if found is None:
            rows = self.limits.max_batch(seq_len)
            found = _Bucket(self._inputs, rows, seq_len, self.device, self.device_id)
            self._buckets[seq_len] = found
        return found

    def run(self, inputs: EngineInputs) -> NDArray[np.float32]:
        batch, seq_len = inputs.batch_size, inputs.seq_len
        shape = run_shape(self.limits, batch, seq_len, cuda_graphs=self.pad_batches)
        bucket = self._bucket(shape.bucket)
        feeds = {
            "input_ids": inputs.input_ids,
            "attention_mask": inputs.attention_mask,
            "token_type_ids": inputs.token_type_ids,
        }
        binding = self._binding
        for name in self._inputs:
            stage = bucket.stage[name]
            value = feeds.get(name)
            stage[:batch, :seq_len] = 0 if value is None else value
            # bucket padding: masked, so no real token attends to it; positions count only
            # the tokens before them, so the real tokens' outputs do not change
            stage[:batch, seq_len:] = 0
            if shape.rows > batch:  # graph padding rows: copies of the first row
                stage[batch : shape.rows] = stage[0]
            bucket.device[name].update_inplace(stage)  # the one host-to-device copy
            binding.bind_input(
                name,
                self.device,
                self.device_id,
                np.int64,
                [shape.rows, shape.bucket],
                bucket.device[name].data_ptr(),
            )
        out_shape = [shape.rows]
        if self.output_name is OutputName.LAST_HIDDEN_STATE:
            out_shape.append(shape.bucket)
        out_shape.extend(self._row_shape)
        binding.bind_output(
            self._out_name,
            self.device,
            self.device_id,
            self._out_type,
            out_shape,
            self._output.data_ptr(),
        )
        run_options = ort.RunOptions()
        if self.cuda_graphs:
            run_options.add_run_config_entry("gpu_graph_id", str(shape.graph_id))
        try:
            self.session.run_with_iobinding(binding, run_options)
            binding.synchronize_outputs()
            result: NDArray[np.generic] = binding.copy_outputs_to_cpu()[0]
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise EngineError(f"onnxruntime failed on a {batch} x {seq_len} batch: {exc}") from exc
        result = result[:batch]
        if self.output_name is OutputName.LAST_HIDDEN_STATE:
            result = result[:, :seq_len]
        return np.ascontiguousarray(result, dtype=np.float32)

    def close(self) -> None:
        self._binding.clear_binding_inputs()
        self._binding.clear_binding_outputs()
        self._buckets.clear()
