"""Where and how a model runs: the engine target that decides the graph and the engine.

The provider comes first (a missing provider or an old GPU fails here, at start), then the
dtype. GPU targets learn the batch shapes from the model and the budget
(:func:`finalize_target`), because their buffers and TensorRT profiles are sized from them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import onnxruntime

from tei_ort.engines.cpu_choice import (
    CpuEngine,
    choose_cpu_engine,
    int8_pairs_saturate,
    isa_tag,
    openvino_installed,
    read_cpu_flags,
)
from tei_ort.engines.providers import (
    Provider,
    default_dtype,
    gpu_compute_capability,
    ort_options,
    parse_provider,
    require,
    sm_tag,
)
from tei_ort.engines.shapes import BatchLimits
from tei_ort.engines.trt_profiles import ProfilePlan, plan_profiles
from tei_ort.errors import ConfigurationError
from tei_ort.exporters.export import Variant
from tei_ort.model.info import ModelInfo
from tei_ort.model.options import ModelOptions
from tei_ort.settings import image_compute_capability

CPU_TARGET = "onnx-cpu"
OPENVINO_TARGET = "openvino-cpu"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineTarget:
    """Where and how a model runs: decides the graph that is built and the engine that runs it."""

    name: str  # cache-key target, e.g. "onnx-cpu"
    dtype: str  # "float32", ...
    variant: Variant  # operator set of the exported graph
    providers: tuple[str, ...]  # ONNX Runtime execution providers, in order
    provider_options: tuple[dict[str, str], ...] = ()  # one per provider (or none)
    engine: str = "ort"  # "ort", "ort-cuda" (IOBinding) or "trt" (TensorRT)
    runtime: str = f"onnxruntime-{onnxruntime.__version__}"  # cache-key part
    extra: str = ""  # cache-key part: TensorRT profiles
    limits: BatchLimits | None = None  # GPU engines: the batch shapes they are sized for
    profiles: ProfilePlan | None = None  # TensorRT
    reduce_range: bool = False  # int8: 7-bit weights (engines.cpu_choice.int8_pairs_saturate)


def select_target(options: ModelOptions) -> EngineTarget:
    """The engine target for the options: the provider, then the dtype."""
    provider = parse_provider(options.provider)
    if provider.name != "cpu":
        return _provider_target(provider, options)
    flags = read_cpu_flags()
    choice = choose_cpu_engine(options.dtype, flags, openvino=openvino_installed())
    logger.info("CPU engine: %s", choice.reason)
    if choice.engine is CpuEngine.OPENVINO:
        from tei_ort.engines.openvino_engine import openvino_version

        # the compiled model depends on the ISA OpenVINO finds: it keys the cache too
        return EngineTarget(
            OPENVINO_TARGET,
            choice.dtype,
            Variant.PLAIN,
            (),
            engine="openvino",
            runtime=f"openvino-{openvino_version()}",
            extra=isa_tag(flags),
        )
    if choice.dtype == "int8":
        from tei_ort.exporters.quantize import QUANTIZER_VERSION

        # the fp32 graph, quantized in write_graph; the scheme (its version, and 7-bit
        # weights where the CPU's pair sums saturate) keys the cache
        reduce_range = int8_pairs_saturate(flags)
        return EngineTarget(
            CPU_TARGET,
            choice.dtype,
            Variant.ORT,
            ("CPUExecutionProvider",),
            extra=f"int8-dynamic-v{QUANTIZER_VERSION}" + ("-u7" if reduce_range else ""),
            reduce_range=reduce_range,
        )
    return EngineTarget(CPU_TARGET, choice.dtype, Variant.ORT, ("CPUExecutionProvider",))


def _provider_target(provider: Provider, options: ModelOptions) -> EngineTarget:
    """GPU and accelerator targets; a missing provider or an old GPU fails here, at start."""
    require(provider)
    dtype = options.dtype or default_dtype(provider)
    if not provider.nvidia:
        if dtype != "float32":
            raise ConfigurationError(
                f"--dtype {dtype} is not available for the {provider.name} provider; use float32"
            )
        # these providers run standard operators only: the plain variant
        return EngineTarget(
            f"onnx-{provider.name}",
            dtype,
            Variant.PLAIN,
            (str(provider.ort_name),),
            provider_options=(ort_options(provider, device_id=options.device_id),),
        )
    if dtype not in ("float16", "float32"):
        raise ConfigurationError(
            f"--dtype {dtype} is not available on {provider.name}; use float16 or float32"
        )
    arch = sm_tag(gpu_compute_capability(options.device_id, image_compute_capability()))
    if provider.name == "cuda":
        options_cuda = ort_options(
            provider, device_id=options.device_id, cuda_graphs=options.cuda_graphs
        )
        return EngineTarget(
            f"onnx-cuda-{arch}",
            dtype,
            Variant.ORT,
            (str(provider.ort_name),),
            provider_options=(options_cuda,),
            engine="ort-cuda",
        )
    from tei_ort.engines.trt_profiles import tensorrt_version

    return EngineTarget(
        f"trt-{arch}",
        dtype,
        Variant.PLAIN,
        (),
        engine="trt",
        runtime=f"tensorrt-{tensorrt_version()}",
    )


# Architectures whose activations overflow float16 (Gemma's residual stream): TEI refuses
# them in any other precision; on a GPU, where float16 is the default, they run float32.
FLOAT32_ONLY = frozenset({"gemma3_text"})


def finalize_target(target: EngineTarget, info: ModelInfo, options: ModelOptions) -> EngineTarget:
    """GPU targets learn the batch shapes (the model's input limit and the budget)."""
    if info.model_type in FLOAT32_ONLY and target.dtype not in ("float32", "int8"):
        if options.dtype is not None:
            raise ConfigurationError(
                f"{info.model_type} models run in float32 only (as in TEI): drop --dtype "
                f"{options.dtype} or pass --dtype float32"
            )
        target = replace(target, dtype="float32")
    if target.engine not in ("ort-cuda", "trt"):
        return target
    limits = BatchLimits(
        max_input_length=min(info.max_input_length, options.max_batch_tokens),
        max_batch_tokens=options.max_batch_tokens,
        max_batch_requests=options.max_batch_requests,
    )
    if target.engine == "ort-cuda":
        return replace(target, limits=limits)
    plan = plan_profiles(limits)
    return replace(target, limits=limits, profiles=plan, extra=plan.describe())
