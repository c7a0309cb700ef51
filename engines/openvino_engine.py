"""OpenVINO engine: the plain-opset graph compiled by OpenVINO's CPU plugin.

On CPUs with AMX-BF16 / AVX512-BF16 the plugin runs the linear layers and attention in
bf16 (``INFERENCE_PRECISION_HINT``; norms, softmax and accumulation stay float32), about 3x
ONNX Runtime's float32 engine on the same graph family (bench/README.md). The compiled
model is exported into the engine cache entry beside ``model.onnx`` on first load and
imported on later starts. SPLADE graphs run their head in float32 (tei_ort.engines.openvino_head).
The ``openvino`` package is imported lazily, so that tei-ort runs where it is missing
(tei_ort.engines.cpu_choice then keeps ONNX Runtime), and without its usage telemetry
(tei_ort.engines.openvino_runtime).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from tei_ort.engines.base import Engine, EngineInputs, OutputName, graph_feed
from tei_ort.engines.chunking import CPU_CHUNK_TOKENS, run_chunked
from tei_ort.engines.errors import EngineError
from tei_ort.engines.openvino_head import HIDDEN_INPUT, split_sparse_head
from tei_ort.engines.openvino_runtime import import_openvino
from tei_ort.engines.ort_engine import physical_cores

logger = logging.getLogger(__name__)

#: the compiled model, as ``CompiledModel.export_model`` writes it
COMPILED_FILE = "model.openvino.blob"
#: SPLADE under bf16: the float32 head, compiled apart (tei_ort.engines.openvino_head)
COMPILED_HEAD_FILE = "model.openvino.head.blob"
#: shape-specific kernels the CPU plugin keeps (LRU): its default (5000) let RSS grow by
#: ~0.9 MB per new (batch, length) shape, without bound in practice; 256 levels off ~100 MB
#: above start. A new shape costs ~7 ms of CPU once for one short text (bench/README.md)
RUNTIME_CACHE_CAPACITY = 256
#: what one more call costs, in padded tokens (engines.chunking.plan_chunks): a batch of
#: mixed lengths is cut into pieces of like lengths where that saves more padding. Batches
#: in arrival order (what the server gets), MiniLM bf16, 2 threads, one process, against
#: no cut: 8 / 16 / 32 texts of the mix 195 -> 328, 224 -> 394, 260 -> 403 texts/s;
#: 16 / 32 short texts and single texts unchanged (1,396 / 1,418, 1,164 / 1,199, 326 /
#: 305, within the noise); 128 did as well on the mix (bench/README.md)
CALL_TOKENS = 256
#: dtypes whose SPLADE graphs run the head apart, in float32 (engines/openvino_head.py).
#: The tests add float32, so that the two-stage plumbing runs on CPUs without native bf16.
SPLIT_HEAD_DTYPES = frozenset({"bfloat16"})
#: ``--dtype`` -> OpenVINO's inference precision
PRECISIONS = {"bfloat16": "bf16", "float32": "f32"}
#: tokens per micro-batch. bf16 on AMX does better with bigger pieces than float32: 2048
#: against 1024 gave +6% short, +16% ~128-token, +3% 512-token and mixed texts (MiniLM,
#: 2 threads, medians of 7, one process; 4096 won at 128 tokens but lost on short texts)
CHUNK_TOKENS = {"bfloat16": 2048, "float32": CPU_CHUNK_TOKENS}


def openvino_version() -> str:
    return str(import_openvino().__version__).split("-")[0]


def compile_config(dtype: str, threads: int | None) -> dict[str, Any]:
    """One stream of ``threads`` threads: the server runs one batch at a time."""
    if dtype not in PRECISIONS:
        raise EngineError(f"the OpenVINO engine runs {', '.join(PRECISIONS)}, not {dtype}")
    return {
        "INFERENCE_PRECISION_HINT": PRECISIONS[dtype],
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
        "INFERENCE_NUM_THREADS": threads or physical_cores(),
        # the server's tokenizer and event-loop threads share these cores: pinning the
        # inference threads to cores would make them wait behind those
        "ENABLE_CPU_PINNING": False,
        # tiny attention probabilities as denormals take slow paths in the FPU
        "CPU_DENORMALS_OPTIMIZATION": True,
        "CPU_RUNTIME_CACHE_CAPACITY": RUNTIME_CACHE_CAPACITY,
    }


def _load_stages(
    core: Any, model_path: Path, compiled_path: Path | None, dtype: str, config: dict[str, Any]
) -> list[Any]:
    """The compiled model(s): one, or SPLADE's bf16 encoder and float32 head.

    Imported from the cache entry when stored there, else compiled and stored (the head
    first, so that a stored encoder implies a stored head).
    """
    head_path = None if compiled_path is None else compiled_path.with_name(COMPILED_HEAD_FILE)
    head_config = config | {"INFERENCE_PRECISION_HINT": PRECISIONS["float32"]}
    if compiled_path is not None and compiled_path.is_file():
        try:
            stages = [core.import_model(compiled_path.read_bytes(), "CPU", config)]
            if head_path is not None and head_path.is_file():
                stages.append(core.import_model(head_path.read_bytes(), "CPU", head_config))
            return stages
        except RuntimeError as exc:  # a blob of another build: compile it again
            logger.warning("recompiling %s: cannot import %s (%s)", model_path, compiled_path, exc)
    try:
        model = core.read_model(str(model_path))
        parts = split_sparse_head(model) if dtype in SPLIT_HEAD_DTYPES else None
        if parts is None:
            return [_compile(core, model, compiled_path, config)]
        head = _compile(core, parts[1], head_path, head_config)
        return [_compile(core, parts[0], compiled_path, config), head]
    except RuntimeError as exc:
        raise EngineError(f"OpenVINO cannot compile {model_path}: {exc}") from exc


def _compile(core: Any, model: Any, compiled_path: Path | None, config: dict[str, Any]) -> Any:
    compiled = core.compile_model(model, "CPU", config)
    if compiled_path is not None:
        # written beside, then renamed: a reader never sees half a file
        tmp = compiled_path.with_name(f".{compiled_path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_bytes(compiled.export_model().getvalue())
            os.replace(tmp, compiled_path)
        except OSError as exc:  # a read-only cache still serves, compiling each start
            logger.warning("cannot store the compiled model in %s: %s", compiled_path, exc)
            tmp.unlink(missing_ok=True)
    return compiled


class OpenVinoEngine(Engine):
    """Runs an exported plain-opset graph with OpenVINO on the CPU."""

    compute_type = "cpu"

    def __init__(
        self,
        model_path: Path,
        *,
        dtype: str = "bfloat16",
        threads: int | None = None,
        compiled_path: Path | None = None,
        chunk_tokens: int | Literal["by_dtype"] | None = "by_dtype",
        call_tokens: int | None = CALL_TOKENS,
    ) -> None:
        try:
            openvino = import_openvino()
        except ImportError as exc:
            raise EngineError("the OpenVINO engine needs the openvino package") from exc
        self.dtype = dtype
        self.stages = _load_stages(
            openvino.Core(), model_path, compiled_path, dtype, compile_config(dtype, threads)
        )
        self.requests = [stage.create_infer_request() for stage in self.stages]
        self._input_names = {name for port in self.stages[0].inputs for name in port.get_names()}
        # a tensor has several names in OpenVINO (the graph's and the producing node's)
        outputs = [
            port.get_names() & {n.value for n in OutputName} for port in self.stages[-1].outputs
        ]
        if len(outputs) != 1 or len(outputs[0]) != 1:
            raise EngineError(f"{model_path}: unexpected graph outputs {outputs}")
        self.output_name = OutputName(next(iter(outputs[0])))
        self.uses_token_type_ids = "token_type_ids" in self._input_names
        # exact lengths and cache-sized pieces, as the ONNX Runtime CPU engine, and batches
        # of mixed lengths cut into pieces of like lengths
        self.pad_multiple = 1
        self.chunk_tokens = CHUNK_TOKENS[dtype] if chunk_tokens == "by_dtype" else chunk_tokens
        self.call_tokens = call_tokens

    def run(self, inputs: EngineInputs) -> NDArray[np.float32]:
        return run_chunked(inputs, self.chunk_tokens, self.output_name, self._run, self.call_tokens)

    def _run(self, inputs: EngineInputs) -> NDArray[np.float32]:
        feed = graph_feed(inputs, self.uses_token_type_ids)
        # the result is a copy (share_outputs=False): the request's buffers are reused
        result = self.requests[0].infer(feed)[0]
        if len(self.requests) > 1:  # SPLADE: the float32 head on the bf16 encoder's output
            head = {HIDDEN_INPUT: result, "attention_mask": inputs.attention_mask}
            result = self.requests[1].infer(head)[0]
        out: NDArray[np.float32] = np.asarray(result, dtype=np.float32)
        return out
