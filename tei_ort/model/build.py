"""Resolve and inspect a model, then find its engine in the cache or build it there.

``prepare_engine`` is what ``tei-ort build`` runs (no engine is loaded) and the first half
of ``loading.load_model``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from tei_ort.engines.errors import EngineError, ProviderStartError
from tei_ort.engines.ort_engine import check_providers, save_optimized
from tei_ort.engines.trt_profiles import PLAN_FILE
from tei_ort.errors import UnsupportedModelError
from tei_ort.exporters.export import (
    EXPORTER_VERSION,
    EXTERNAL_DATA_THRESHOLD,
    export_onnx,
    export_to_file,
)
from tei_ort.exporters.progress import QUIET, Progress
from tei_ort.exporters.weights import WeightStore
from tei_ort.model.cache import (
    ENGINE_FILE,
    OPTIMIZED_FILE,
    CacheKey,
    EngineCache,
    default_cache_root,
    weights_digest,
)
from tei_ort.model.hub import resolve_model
from tei_ort.model.info import Head, ModelInfo
from tei_ort.model.inspect import inspect_model
from tei_ort.model.options import ModelOptions
from tei_ort.model.targets import CPU_TARGET, EngineTarget, finalize_target, select_target


@dataclass(frozen=True)
class PreparedEngine:
    info: ModelInfo
    target: EngineTarget
    entry_dir: Path  # the engine cache entry
    built: bool  # exported (or repaired) by this call
    optimized: bool = False  # the entry holds the graph ORT optimized for the target
    seconds: dict[str, float] = field(default_factory=dict)


def write_graph(
    info: ModelInfo, target: EngineTarget, path: Path, progress: Progress = QUIET
) -> None:
    """Export the graph the target runs to ``path`` (weights over 1 GiB go to external data)."""
    # float16 engines (ONNX Runtime CUDA and TensorRT's strongly typed build) run the graph
    # exporters.fp16 converts, with the float32 it pins
    post_pass = target.dtype in ("float16", "int8")
    if not post_pass:
        export_to_file(
            info.config,
            info.weight_files,
            info.head,
            path,
            target.variant,
            yes_no_token_ids=info.yes_no_token_ids,
            progress=progress,
        )
        if target.name == CPU_TARGET:
            from tei_ort.exporters.cpu_graph import unfuse_skip_layer_norm
            from tei_ort.exporters.token_packing import pack_tokens

            # nodes only: tensors in external data stay where they are
            graph = unfuse_skip_layer_norm(onnx.load(str(path), load_external_data=False))
            onnx.save_model(pack_tokens(graph), str(path))
        return
    if WeightStore(info.weight_files).nbytes_float32() > EXTERNAL_DATA_THRESHOLD:
        # the float16 / int8 passes rewrite an in-memory graph, which protobuf caps at 2 GB
        raise UnsupportedModelError(
            f"{info.model_id} has more than 1 GiB of weights: --dtype {target.dtype} engines "
            "are built in memory and cannot hold it; use --dtype float32"
        )
    graph = export_onnx(
        info.config,
        info.weight_files,
        info.head,
        target.variant,
        yes_no_token_ids=info.yes_no_token_ids,
        progress=progress,
    )
    if target.dtype == "float16":
        from tei_ort.exporters.fp16 import to_float16

        graph = to_float16(graph)
    else:
        from tei_ort.exporters.cpu_graph import unfuse_skip_layer_norm
        from tei_ort.exporters.quantize import quantize_int8
        from tei_ort.exporters.token_packing import pack_tokens

        graph = quantize_int8(
            pack_tokens(unfuse_skip_layer_norm(graph)), reduce_range=target.reduce_range
        )
    onnx.save_model(graph, str(path))


def prepare_engine(
    options: ModelOptions, progress: Progress = QUIET, *, download_bar: type[Any] | None = None
) -> PreparedEngine:
    """Resolve and inspect the model, then find its engine in the cache or build it.

    ``download_bar``: the tqdm class a hub download is shown with (None: huggingface_hub's).
    """
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    target = select_target(options)
    progress(f"resolving {options.model_id or 'the default model'}")
    resolved = resolve_model(
        options.model_id,
        revision=options.revision,
        token=options.hf_token,
        cache_dir=options.huggingface_hub_cache,
        download_bar=download_bar,
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
        write_graph(info, target, tmp / ENGINE_FILE, progress)
        if target.profiles is not None:
            from tei_ort.exporters.tensorrt import build_engine

            build_engine(
                tmp / ENGINE_FILE,
                tmp / PLAN_FILE,
                target.profiles,
                progress=progress,
            )

    def optimize(model_path: Path, out_dir: Path) -> None:
        if target.engine == "openvino":
            compile_openvino(target, model_path, out_dir, progress)
        else:
            optimize_graph(target, model_path, out_dir / OPTIMIZED_FILE, progress)

    t = time.perf_counter()
    found = cache.get_or_build(key, build, None if target.engine == "trt" else optimize)
    seconds["export" if found.built else "cache_lookup"] = time.perf_counter() - t
    progress(("built " if found.built else "found cached ") + f"engine in {found.path}")
    return PreparedEngine(
        info=info,
        target=target,
        entry_dir=found.path,
        built=found.built,
        optimized=found.optimized,
        seconds=seconds,
    )


def optimize_graph(
    target: EngineTarget, model_path: Path, optimized_path: Path, progress: Progress
) -> None:
    """Save the graph ONNX Runtime optimizes for the target, so that starts load it as is.

    A target whose provider this machine lacks or cannot start (a CUDA engine built on a
    CPU host, or in an image build with onnxruntime-gpu and no GPU) is left without one:
    its server optimizes in memory at each start. A graph optimized for the CPU is never
    stored for another provider (``save_optimized`` removes what a fallen-back session saved).
    """
    try:
        check_providers(target.providers)
    except EngineError as exc:
        progress(f"not optimizing the graph here ({exc}); the server will at each start")
        return
    options = target.provider_options or None
    try:
        # one opaque call: its meter shows the time it has taken, not how much is left
        with progress.meter("optimizing the graph with ONNX Runtime", None, "s"):
            save_optimized(
                model_path, optimized_path, providers=target.providers, provider_options=options
            )
    except ProviderStartError as exc:  # installed, but no driver / CUDA library / GPU here
        progress(f"not optimizing the graph here ({exc}); the server will at each start")


def compile_openvino(
    target: EngineTarget, model_path: Path, out_dir: Path, progress: Progress
) -> None:
    """Store the model OpenVINO compiles for this CPU in the entry, so starts import it."""
    from tei_ort.engines.openvino_engine import COMPILED_FILE, OpenVinoEngine

    with progress.meter("compiling the graph with OpenVINO", None, "s"):
        OpenVinoEngine(model_path, dtype=target.dtype, compiled_path=out_dir / COMPILED_FILE)
