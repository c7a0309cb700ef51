"""ONNX Runtime engine: one InferenceSession behind the Engine interface.

The CPU provider is the default; other ORT providers (CUDA, TensorRT, CANN, CoreML,
OpenVINO) are named by the caller. A provider that is asked for and not available is a
start-up error, never a silent fall back to the CPU: not when it is missing from this
onnxruntime (:func:`check_providers`), not when its libraries or its device fail to load
(``session_check.verify``), and not at run time (ONNX Runtime's own retry on the CPU after
a provider failure is switched off with ``enable_fallback=0``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from tei_ort.engines.base import Engine, EngineInputs, OutputName, graph_feed
from tei_ort.engines.chunking import CPU_CHUNK_TOKENS, run_chunked
from tei_ort.engines.errors import EngineError
from tei_ort.engines.providers import PACKAGES, compute_type
from tei_ort.engines.session_check import prepare, start_failure, verify

logger = logging.getLogger(__name__)

CPU_PROVIDER = "CPUExecutionProvider"
# ORT's CPU SkipLayerNormalization is slower than the ops it fuses (exporters/cpu_graph.py)
CPU_DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)


#: what one more call costs on the CPU, in padded tokens (engines.chunking.plan_chunks).
#: The packed graph already runs its linear layers on real tokens only, so a cut saves
#: attention and less: it must save more than on OpenVINO. Batches in arrival order,
#: MiniLM float32, 2 threads, one process, against no cut: 8 / 16 / 32 texts of the mix
#: 106 -> 128, 123 -> 138, 147 -> 163 texts/s; 16 / 32 short texts 514 -> 518,
#: 509 -> 515 (bench/README.md)
CPU_CALL_TOKENS = 512


_TOPOLOGY = Path("/sys/devices/system/cpu")


def count_cores(cpus: Iterable[int], topology: Path = _TOPOLOGY) -> int:
    """How many physical cores ``cpus`` (logical CPU numbers) span: SMT siblings share a
    (package, core) pair. A CPU whose topology cannot be read counts as a core of its own."""
    cores: set[tuple[str, ...]] = set()
    for cpu in cpus:
        folder = topology / f"cpu{cpu}" / "topology"
        try:
            package = (folder / "physical_package_id").read_text().strip()
            core = (folder / "core_id").read_text().strip()
        except OSError:
            cores.add(("cpu", str(cpu)))
            continue
        cores.add((package, core))
    return max(1, len(cores))


def physical_cores() -> int:
    """Physical cores this process may run on: one inference thread per core, since a
    hyper-thread sibling shares the core's vector units (ORT's default counts both)."""
    try:
        return count_cores(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return max(1, os.cpu_count() or 1)


def session_options(
    threads: int | None,
    optimized_path: Path | None,
    external_data_name: str | None = None,
    *,
    cpu: bool = False,
) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or physical_cores()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if cpu:
        # denormal activations (tiny attention probabilities) take slow paths in the FPU
        opts.add_session_config_entry("session.set_denormal_as_zero", "1")
        # ORT's pool threads spin between ops by default: on a few shared cores that takes
        # the CPU from the server's tokenization and event-loop threads (measured on 2
        # cores under load: 32 x 16 at 107 ms without spinning against 148 ms with it, and
        # HTTP c=1 at 690-750 req/s against 425-480; bench/README.md)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if optimized_path is not None:
        opts.optimized_model_filepath = str(optimized_path)
        if external_data_name is not None:
            # a graph over 2 GB cannot be saved as one protobuf: its weights go beside it
            opts.add_session_config_entry(
                "session.optimized_model_external_initializers_file_name", external_data_name
            )
            opts.add_session_config_entry(
                "session.optimized_model_external_initializers_min_size_in_bytes", "1024"
            )
    opts.log_severity_level = 3
    return opts


def check_providers(providers: Sequence[str]) -> None:
    available = set(ort.get_available_providers())
    for provider in providers:
        if provider not in available:
            package = PACKAGES.get(provider, "an onnxruntime build that has it")
            raise EngineError(
                f"execution provider {provider} is not available in this onnxruntime "
                f"(available: {', '.join(sorted(available))}); install {package}"
            )


def save_optimized(
    model_path: Path,
    optimized_path: Path,
    *,
    providers: Sequence[str] = (CPU_PROVIDER,),
    provider_options: Sequence[dict[str, str]] | None = None,
) -> None:
    """Let ONNX Runtime optimize the graph for ``providers`` and save it at ``optimized_path``.

    Weights kept beside the graph (external data) go beside the optimized graph too, as
    ``<optimized name>.data``. The options are the ones ``OrtEngine`` loads with, so that
    loading the saved graph gives the session a fresh optimization would.
    """
    check_providers(providers)
    data_name = None
    if model_path.with_name(model_path.name + ".data").is_file():
        data_name = optimized_path.name + ".data"
    cpu = tuple(providers) == (CPU_PROVIDER,)
    opts = session_options(1, optimized_path, data_name, cpu=cpu)
    prepare(providers)
    try:
        session = ort.InferenceSession(
            str(model_path),
            sess_options=opts,
            providers=list(providers),
            provider_options=list(provider_options) if provider_options is not None else None,
            disabled_optimizers=list(CPU_DISABLED_OPTIMIZERS) if cpu else None,
            enable_fallback=0,
        )
        # a session that fell back to the CPU saved a CPU-optimized graph: never keep it
        verify(session, providers, f"cannot optimize {model_path} for {providers[0]}")
    except Exception as exc:  # onnxruntime raises its own untyped errors
        optimized_path.unlink(missing_ok=True)
        if data_name is not None:
            optimized_path.with_name(data_name).unlink(missing_ok=True)
        if isinstance(exc, EngineError):
            raise
        what = f"onnxruntime cannot optimize {model_path}"
        raise start_failure(providers[0], exc, what) or EngineError(f"{what}: {exc}") from exc
    if not optimized_path.is_file():
        raise EngineError(f"onnxruntime did not save the optimized graph {optimized_path}")


class OrtEngine(Engine):
    """Runs an exported graph with ONNX Runtime."""

    def __init__(
        self,
        model_path: Path,
        *,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        provider_options: Sequence[dict[str, str]] | None = None,
        threads: int | None = None,
        optimized_path: Path | None = None,
        dtype: str = "float32",
    ) -> None:
        check_providers(providers)
        self.compute_type = compute_type(providers[0])
        self.dtype = dtype
        if provider_options is not None and len(provider_options) != len(providers):
            raise EngineError("provider_options needs one dict per provider")
        # A graph that ORT already optimized and saved (``save_optimized``, at build time)
        # loads without re-optimizing it; the engine itself never writes to the cache, which
        # may be mounted read-only.
        path = (
            optimized_path
            if optimized_path is not None and optimized_path.is_file()
            else model_path
        )
        self.cpu = tuple(providers) == (CPU_PROVIDER,)
        opts = session_options(threads, None, cpu=self.cpu)
        prepare(providers)
        try:
            self.session = ort.InferenceSession(
                str(path),
                sess_options=opts,
                providers=list(providers),
                provider_options=list(provider_options) if provider_options is not None else None,
                disabled_optimizers=list(CPU_DISABLED_OPTIMIZERS) if self.cpu else None,
                enable_fallback=0,
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            what = f"onnxruntime cannot load {path}"
            raise start_failure(providers[0], exc, what) or EngineError(f"{what}: {exc}") from exc
        verify(self.session, providers, f"cannot load {path}")
        self._input_names = {i.name for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        if len(outputs) != 1 or outputs[0] not in {n.value for n in OutputName}:
            raise EngineError(f"{path}: unexpected graph outputs {outputs}")
        self.output_name = OutputName(outputs[0])
        self.uses_token_type_ids = "token_type_ids" in self._input_names
        if self.cpu:
            # CPU shapes need not repeat: exact lengths are least compute (the batcher pads
            # to this multiple), and big batches run as cache-sized pieces
            self.pad_multiple = 1
            self.chunk_tokens: int | None = CPU_CHUNK_TOKENS
            self.call_tokens: int | None = CPU_CALL_TOKENS
        else:
            self.chunk_tokens = self.call_tokens = None

    def run(self, inputs: EngineInputs) -> NDArray[np.float32]:
        return run_chunked(inputs, self.chunk_tokens, self.output_name, self._run, self.call_tokens)

    def _run(self, inputs: EngineInputs) -> NDArray[np.float32]:
        feed = graph_feed(inputs, self.uses_token_type_ids)
        result: NDArray[np.float32] = self.session.run(None, feed)[0]
        return result
