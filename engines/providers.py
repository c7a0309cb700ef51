"""Execution providers: the settings' names -> ONNX Runtime providers, options and checks.

``cpu``, ``cuda``, ``cann`` (Huawei Ascend NPU), ``coreml`` and ``openvino`` are ONNX
Runtime execution providers; ``tensorrt`` is tei-ort's own TensorRT engine
(``tei_ort.engines.trt_engine``), which refuses shapes outside its profiles instead of rebuilding
an engine mid-traffic as ONNX Runtime's TensorRT provider would.

A provider that is asked for and missing is an ``EngineError`` at start-up that names the
package to install, never a silent fall back to the CPU. NVIDIA GPUs below compute
capability 7.5 (before Turing) are refused, as Text Embeddings Inference refuses them.
The compute capability is read with ``nvidia-smi`` (or the CUDA runtime library), never
through torch.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import subprocess
from collections.abc import Collection
from dataclasses import dataclass

from tei_ort.engines.errors import EngineError, UnknownProviderError
from tei_ort.engines.gpu_stack import (
    ORT_GPU_INSTALL,
    TENSORRT_INSTALL,
    check_onnxruntime_cuda,
    check_single_onnxruntime,
)

logger = logging.getLogger(__name__)

#: TEI serves Turing (7.5), Ampere (8.0, 8.6), Ada (8.9) and Hopper (9.0) and newer
MIN_COMPUTE_CAPABILITY = (7, 5)


@dataclass(frozen=True)
class Provider:
    name: str  # the settings value
    ort_name: str | None  # ONNX Runtime's provider name; None for the TensorRT engine
    package: str  # what to install when it is missing
    nvidia: bool  # runs on an NVIDIA GPU (compute capability checked, float16 default)


PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        Provider("cpu", "CPUExecutionProvider", "onnxruntime", nvidia=False),
        Provider("cuda", "CUDAExecutionProvider", f"onnxruntime-gpu: {ORT_GPU_INSTALL}", True),
        Provider("tensorrt", None, f"tensorrt-cu13: {TENSORRT_INSTALL}", nvidia=True),
        Provider("cann", "CANNExecutionProvider", "onnxruntime-cann", nvidia=False),
        Provider("coreml", "CoreMLExecutionProvider", "onnxruntime (the macOS build)", False),
        Provider("openvino", "OpenVINOExecutionProvider", "onnxruntime-openvino", False),
    )
}

#: ONNX Runtime provider name -> the package that brings it (for error messages)
PACKAGES = {p.ort_name: p.package for p in PROVIDERS.values() if p.ort_name is not None}


def parse_provider(value: str | None) -> Provider:
    """A settings value (case-insensitive; ORT's own names accepted too) -> Provider."""
    if value is None or not value.strip():
        return PROVIDERS["cpu"]
    key = value.strip().lower()
    for provider in PROVIDERS.values():
        if key in (provider.name, (provider.ort_name or "").lower()):
            return provider
    if key in ("trt", "tensorrtexecutionprovider"):
        return PROVIDERS["tensorrt"]
    raise UnknownProviderError(
        f"invalid execution provider {value!r}: expected one of {', '.join(PROVIDERS)}"
    )


def compute_type(ort_provider: str) -> str:
    """What an ONNX Runtime provider runs on, in ``x-compute-type``: our name for it."""
    for provider in PROVIDERS.values():
        if provider.ort_name == ort_provider:
            return provider.name
    return ort_provider.removesuffix("ExecutionProvider").lower()


def default_dtype(provider: Provider) -> str:
    """float16 on NVIDIA GPUs (as TEI's CUDA images), float32 elsewhere."""
    return "float16" if provider.nvidia else "float32"


def require(provider: Provider, available: Collection[str] | None = None) -> None:
    """Fail start-up when ``provider`` is not installed; names the package to install."""
    if provider.ort_name is None:
        if importlib.util.find_spec("tensorrt") is None:
            raise EngineError(
                f"execution provider {provider.name} needs TensorRT; install {provider.package}"
            )
        return
    installed = available is None
    if installed and provider.name == "cuda":
        check_single_onnxruntime()  # the CPU build may have overwritten onnxruntime-gpu
    if available is None:
        import onnxruntime

        available = onnxruntime.get_available_providers()
    if provider.ort_name not in available:
        raise EngineError(
            f"execution provider {provider.name} ({provider.ort_name}) is not available in "
            f"this onnxruntime (available: {', '.join(sorted(available))}); "
            f"install {provider.package}"
        )
    if installed and provider.name == "cuda":
        import onnxruntime

        check_onnxruntime_cuda(onnxruntime)  # the CUDA 13 build, alone


def ort_options(
    provider: Provider, *, device_id: int = 0, cuda_graphs: bool = False
) -> dict[str, str]:
    """ONNX Runtime provider options for ``provider`` (strings, as ORT takes them)."""
    if provider.name == "cuda":
        return {
            "device_id": str(device_id),
            # grow the arena by what is asked: bucketed shapes repeat, doubling wastes memory
            "arena_extend_strategy": "kSameAsRequested",
            "cudnn_conv_algo_search": "HEURISTIC",  # no convolutions; skip the search
            "enable_cuda_graph": "1" if cuda_graphs else "0",
            # ORT's default is TF32 matmuls: --dtype float32 means float32, and the float32
            # islands of the float16 graph (exporters.fp16) are pinned there for accuracy
            "use_tf32": "0",
        }
    if provider.name == "cann":
        return {"device_id": str(device_id), "arena_extend_strategy": "kSameAsRequested"}
    if provider.name == "coreml":
        return {"ModelFormat": "MLProgram", "MLComputeUnits": "ALL"}
    return {}


def parse_compute_capability(text: str) -> tuple[int, int]:
    """'8.6', '86', 'sm_86' or 'sm86' -> (8, 6)."""
    value = text.strip().lower().removeprefix("sm").lstrip("_")
    try:
        if "." in value:
            major, minor = value.split(".", 1)
            return int(major), int(minor)
        number = int(value)
    except ValueError as exc:
        raise EngineError(f"cannot read a compute capability from {text!r}") from exc
    if number < 10:
        return number, 0
    return number // 10, number % 10


def sm_tag(capability: tuple[int, int]) -> str:
    """(8, 6) -> 'sm86', the architecture part of cache keys and image tags."""
    return f"sm{capability[0]}{capability[1]}"


def check_compute_capability(capability: tuple[int, int]) -> None:
    if capability < MIN_COMPUTE_CAPABILITY:
        need = ".".join(map(str, MIN_COMPUTE_CAPABILITY))
        raise EngineError(
            f"GPU compute capability {capability[0]}.{capability[1]} is not supported: "
            f"tei-ort's GPU engines need {need} or newer (Turing, Ampere, Ada Lovelace, "
            "Hopper), as Text Embeddings Inference does"
        )


def query_compute_capability(device_id: int = 0) -> tuple[int, int] | None:
    """The GPU's compute capability from nvidia-smi, else the CUDA runtime; None: no GPU."""
    smi = shutil.which("nvidia-smi")
    if smi is not None:
        try:
            out = subprocess.run(
                [smi, f"--id={device_id}", "--query-gpu=compute_cap", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout
            lines = [line for line in out.splitlines() if line.strip()]
            if lines:
                return parse_compute_capability(lines[0])
        except (OSError, subprocess.SubprocessError, EngineError):
            pass  # an old driver without compute_cap: ask the runtime library instead
    from tei_ort.engines import _cudart

    return _cudart.compute_capability(device_id)


def gpu_compute_capability(device_id: int = 0, image_cap: str | None = None) -> tuple[int, int]:
    """The capability of the GPU the engine will run on, checked; no GPU is an error.

    ``image_cap`` is the architecture an image was built for (Dockerfile-trt's
    CUDA_COMPUTE_CAP): a different GPU is only warned about, its engines are built for it.
    """
    capability = query_compute_capability(device_id)
    if capability is None:
        raise EngineError(
            f"no NVIDIA GPU {device_id} found (nvidia-smi and the CUDA runtime see none); "
            "use --execution-provider cpu, or run the container with --gpus all"
        )
    check_compute_capability(capability)
    if image_cap and parse_compute_capability(image_cap) != capability:
        logger.warning(
            "this image was built for compute capability %s but GPU %d has %d.%d: engines "
            "are built for this GPU on first start (use the image for its architecture)",
            image_cap,
            device_id,
            *capability,
        )
    return capability
