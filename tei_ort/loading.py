"""From a model id to a running engine: resolve, inspect, look up or build, load, warm up.

``prepare_engine`` is what ``tei-ort build`` runs (no engine is loaded); ``load_model``
is what ``serve`` and the in-process API run.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
import onnxruntime

from engines.base import Engine, EngineInputs
from engines.cpu_choice import (
    CpuEngine,
    choose_cpu_engine,
    isa_tag,
    openvino_installed,
    read_cpu_flags,
)
from engines.ort_engine import OrtEngine
from engines.providers import (
    Provider,
    default_dtype,
    gpu_compute_capability,
    ort_options,
    parse_provider,
    require,
    sm_tag,
)
from engines.shapes import BatchLimits
from exporters.cache import (
    ENGINE_FILE,
    OPTIMIZED_FILE,
    CacheKey,
    EngineCache,
    default_cache_root,
    weights_digest,
)
from exporters.export import (
    EXPORTER_VERSION,
    EXTERNAL_DATA_THRESHOLD,
    Variant,
    export_onnx,
    export_to_file,
)
from exporters.tensorrt import PLAN_FILE, ProfilePlan, plan_profiles
from exporters.weights import WeightStore
from tei_ort.dense import DenseStack
from tei_ort.errors import ConfigurationError, EngineError, UnsupportedModelError
from tei_ort.hub import resolve_model
from tei_ort.inspect import inspect_model
from tei_ort.model_info import Head, ModelInfo, Pooling
from tei_ort.tokenization import Tokenizer

if TYPE_CHECKING:
    from tei_ort.settings import Settings

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]

CPU_TARGET = "onnx-cpu"
OPENVINO_TARGET = "openvino-cpu"


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class ModelOptions:
    """What decides which engine a model gets (the model flags of serve and build)."""

    model_id: str | None = None
    revision: str | None = None
    hf_token: str | None = None
    huggingface_hub_cache: str | None = None
    pooling: Pooling | None = None
    dense_path: str | None = None
    dtype: str | None = None
    engine_cache: str | None = None
    threads: int | None = None
    provider: str | None = None  # execution provider (engines.providers); None: cpu
    device_id: int = 0
    cuda_graphs: bool = False
    # GPU engines size their buffers and TensorRT profiles from the batcher's limits
    max_batch_tokens: int = 16384
    max_batch_requests: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelOptions:
        return cls(
            model_id=settings.model_id,
            revision=settings.revision,
            hf_token=settings.hf_token,
            huggingface_hub_cache=settings.huggingface_hub_cache,
            pooling=settings.pooling,
            dense_path=settings.dense_path,
            dtype=settings.dtype,
            engine_cache=settings.engine_cache,
            provider=settings.execution_provider,
            device_id=settings.device_id,
            cuda_graphs=settings.cuda_graphs,
            max_batch_tokens=settings.max_batch_tokens,
            max_batch_requests=settings.max_batch_requests,
        )


@dataclass(frozen=True)
class PreparedEngine:
    info: ModelInfo
    target: EngineTarget
    entry_dir: Path  # the engine cache entry
    built: bool  # exported by this call (a cache miss)
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class LoadedModel:
    info: ModelInfo
    tokenizer: Tokenizer
    engine: Engine
    dense: DenseStack | None = None
    entry_dir: Path | None = None
    built: bool = False
    seconds: dict[str, float] = field(default_factory=dict)


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


def select_target(options: ModelOptions) -> EngineTarget:
    """The engine target for the options: the provider, then the dtype."""
    provider = parse_provider(options.provider)
    if provider.name != "cpu":
        return _provider_target(provider, options)
    flags = read_cpu_flags()
    choice = choose_cpu_engine(options.dtype, flags, openvino=openvino_installed())
    logger.info("CPU engine: %s", choice.reason)
    if choice.engine is CpuEngine.OPENVINO:
        from engines.openvino_engine import openvino_version

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
        from exporters.quantize import QUANTIZER_VERSION

        # the fp32 graph, quantized in write_graph; the scheme's version keys the cache
        return EngineTarget(
            CPU_TARGET,
            choice.dtype,
            Variant.ORT,
            ("CPUExecutionProvider",),
            extra=f"int8-dynamic-v{QUANTIZER_VERSION}",
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
    arch = sm_tag(gpu_compute_capability(options.device_id))
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
    from exporters.tensorrt import tensorrt_version

    return EngineTarget(
        f"trt-{arch}",
        dtype,
        Variant.PLAIN,
        (),
        engine="trt",
        runtime=f"tensorrt-{tensorrt_version()}",
    )


def finalize_target(target: EngineTarget, info: ModelInfo, options: ModelOptions) -> EngineTarget:
    """GPU targets learn the batch shapes (the model's input limit and the budget)."""
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


def write_graph(info: ModelInfo, target: EngineTarget, path: Path) -> None:
    """Export the graph the target runs to ``path`` (weights over 1 GiB go to external data)."""
    post_pass = (target.dtype == "float16" and target.engine == "ort-cuda") or (
        target.dtype == "int8"
    )
    if not post_pass:
        export_to_file(
            info.config,
            info.weight_files,
            info.head,
            path,
            target.variant,
            yes_no_token_ids=info.yes_no_token_ids,
        )
        if target.name == CPU_TARGET:
            from exporters.cpu_graph import unfuse_skip_layer_norm
            from exporters.token_packing import pack_tokens

            # nodes only: tensors in external data stay where they are
            graph = unfuse_skip_layer_norm(onnx.load(str(path), load_external_data=False))
            onnx.save_model(pack_tokens(graph), str(path))
        return
    if WeightStore(info.weight_files).nbytes_float32() > EXTERNAL_DATA_THRESHOLD:
        # the float16 / int8 passes rewrite an in-memory graph, which protobuf caps at 2 GB
        raise UnsupportedModelError(
            f"{info.model_id} has more than 1 GiB of weights: --dtype {target.dtype} engines "
            "are built in memory and cannot hold it; use float32 (ONNX Runtime) or tensorrt"
        )
    graph = export_onnx(
        info.config,
        info.weight_files,
        info.head,
        target.variant,
        yes_no_token_ids=info.yes_no_token_ids,
    )
    if target.dtype == "float16":
        from exporters.fp16 import to_float16

        # TensorRT gets the float32 graph and lowers it to float16 itself (exporters.tensorrt)
        graph = to_float16(graph)
    else:
        from exporters.cpu_graph import unfuse_skip_layer_norm
        from exporters.quantize import quantize_int8
        from exporters.token_packing import pack_tokens

        graph = quantize_int8(pack_tokens(unfuse_skip_layer_norm(graph)))
    onnx.save_model(graph, str(path))


def open_engine(entry_dir: Path, target: EngineTarget, options: ModelOptions) -> Engine:
    """An engine over a cache entry."""
    if target.engine == "ort-cuda" and target.limits is not None:
        from engines.ort_cuda import OrtCudaEngine

        return OrtCudaEngine(
            entry_dir / ENGINE_FILE,
            limits=target.limits,
            provider_options=target.provider_options[0],
            device_id=options.device_id,
            cuda_graphs=options.cuda_graphs,
            optimized_path=entry_dir / OPTIMIZED_FILE,
        )
    if target.engine == "openvino":
        from engines.openvino_engine import COMPILED_FILE, OpenVinoEngine

        return OpenVinoEngine(
            entry_dir / ENGINE_FILE,
            dtype=target.dtype,
            threads=options.threads,
            compiled_path=entry_dir / COMPILED_FILE,
        )
    if target.engine == "trt" and target.profiles is not None:
        from engines.trt_engine import TrtEngine

        return TrtEngine(entry_dir / PLAN_FILE, plan=target.profiles, device_id=options.device_id)
    return OrtEngine(
        entry_dir / ENGINE_FILE,
        providers=target.providers,
        provider_options=target.provider_options or None,
        threads=options.threads,
        optimized_path=entry_dir / OPTIMIZED_FILE,
    )


def prepare_engine(options: ModelOptions, progress: Progress = _quiet) -> PreparedEngine:
    """Resolve and inspect the model, then find its engine in the cache or build it."""
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    target = select_target(options)
    progress(f"resolving {options.model_id or 'the default model'}")
    resolved = resolve_model(
        options.model_id,
        revision=options.revision,
        token=options.hf_token,
        cache_dir=options.huggingface_hub_cache,
    )
    info = inspect_model(resolved, pooling=options.pooling, dense_path=options.dense_path)
    target = finalize_target(target, info, options)
    seconds["resolve"] = time.perf_counter() - start

    root = (
        Path(options.engine_cache)
        if options.engine_cache
        else default_cache_root(options.huggingface_hub_cache)
    )
    cache = EngineCache(root)
    t = time.perf_counter()
    progress(f"hashing the weights of {info.model_id}")
    digested = [info.path / "config.json", *info.weight_files]
    if info.head is Head.YES_NO_LOGIT:  # the yes/no token ids come from the tokenizer
        digested.append(info.path / "tokenizer.json")
    digest = weights_digest(digested, memo_dir=root)
    seconds["digest"] = time.perf_counter() - t
    key = CacheKey(
        model_id=info.model_id,
        weights_digest=digest,
        exporter_version=EXPORTER_VERSION,
        target=target.name,
        dtype=target.dtype,
        head=info.head.value,
        variant=target.variant.value,
        runtime=target.runtime,
        extra=target.extra,
    )

    def build(tmp: Path) -> None:
        progress(f"exporting {info.model_id} ({info.model_type}, {info.head.value} head) to ONNX")
        write_graph(info, target, tmp / ENGINE_FILE)
        if target.profiles is not None:
            from exporters.tensorrt import build_engine

            build_engine(
                tmp / ENGINE_FILE,
                tmp / PLAN_FILE,
                target.profiles,
                fp16=target.dtype == "float16",
                progress=progress,
            )

    t = time.perf_counter()
    entry, built = cache.get_or_build(key, build)
    seconds["export" if built else "cache_lookup"] = time.perf_counter() - t
    progress(("built " if built else "found cached ") + f"engine in {entry}")
    return PreparedEngine(info=info, target=target, entry_dir=entry, built=built, seconds=seconds)


def load_model(options: ModelOptions, progress: Progress = _quiet) -> LoadedModel:
    """Everything ``serve`` needs: model info, tokenizer, a warmed-up engine."""
    prepared = prepare_engine(options, progress)
    info = prepared.info
    seconds = dict(prepared.seconds)
    t = time.perf_counter()
    tokenizer = Tokenizer.from_dir(info.path)
    dense = DenseStack.load(info.dense_layers) if info.dense_layers else None
    progress("loading the engine")
    engine = open_engine(prepared.entry_dir, prepared.target, options)
    seconds["load"] = time.perf_counter() - t
    t = time.perf_counter()
    warm_up(engine, tokenizer.pad_token_id)
    seconds["warm_up"] = time.perf_counter() - t
    logger.info("model %s ready: %s", info.model_id, json.dumps(seconds))
    return LoadedModel(
        info=info,
        tokenizer=tokenizer,
        engine=engine,
        dense=dense,
        entry_dir=prepared.entry_dir,
        built=prepared.built,
        seconds=seconds,
    )


def load_from_settings(settings: Settings, progress: Progress = _quiet) -> LoadedModel:
    return load_model(ModelOptions.from_settings(settings), progress)


def warm_up(engine: Engine, pad_id: int) -> None:
    """Run one small batch, so the first request is not the one that pays for it."""
    # two rows of 4 and 3 tokens, padded to 8; ids below 100 exist in every vocabulary
    mask = (np.arange(8)[None, :] < np.array([[4], [3]])).astype(np.int64)  # (2, 8)
    ids = np.where(mask == 1, 99, pad_id).astype(np.int64)  # (2, 8)
    try:
        engine.run(EngineInputs(ids, mask, np.zeros_like(ids)))
    except Exception as exc:
        raise EngineError(f"the engine failed its warm-up run: {exc}") from exc
