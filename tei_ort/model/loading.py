"""From a model id to a running engine: prepare (``build``), load, warm up.

``load_model`` is what ``serve`` and the in-process API run.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tei_ort.engines.base import Engine, EngineInputs
from tei_ort.engines.ort_engine import OrtEngine
from tei_ort.engines.trt_profiles import PLAN_FILE
from tei_ort.errors import EngineError
from tei_ort.exporters.progress import QUIET, Progress
from tei_ort.model.build import prepare_engine
from tei_ort.model.cache import ENGINE_FILE, OPTIMIZED_FILE
from tei_ort.model.dense import F32, DenseStack
from tei_ort.model.info import ModelInfo
from tei_ort.model.late_heads import LateHeads, load_late_heads
from tei_ort.model.options import ModelOptions
from tei_ort.model.pplx import pooled_transform
from tei_ort.model.targets import EngineTarget
from tei_ort.model.tokenization import Tokenizer

if TYPE_CHECKING:
    from tei_ort.settings import Settings

__all__ = ["LoadedModel", "ModelOptions", "load_from_settings", "load_model", "prepare_engine"]

logger = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    info: ModelInfo
    tokenizer: Tokenizer
    engine: Engine
    dense: Callable[[F32], F32] | None = None  # Dense modules, pplx quantization
    late: LateHeads | None = None  # ColBERT / BGE-M3 heads on the token states
    entry_dir: Path | None = None
    built: bool = False
    seconds: dict[str, float] = field(default_factory=dict)


def open_engine(
    entry_dir: Path, target: EngineTarget, options: ModelOptions, *, optimized: bool = True
) -> Engine:
    """An engine over a cache entry (its optimized graph unless ``optimized`` is False)."""
    optimized_path = entry_dir / OPTIMIZED_FILE if optimized else None
    if target.engine == "ort-cuda" and target.limits is not None:
        from tei_ort.engines.ort_cuda import OrtCudaEngine

        return OrtCudaEngine(
            entry_dir / ENGINE_FILE,
            limits=target.limits,
            provider_options=target.provider_options[0],
            device_id=options.device_id,
            cuda_graphs=options.cuda_graphs,
            optimized_path=optimized_path,
            dtype=target.dtype,
        )
    if target.engine == "openvino":
        from tei_ort.engines.openvino_engine import COMPILED_FILE, OpenVinoEngine

        compiled = entry_dir / COMPILED_FILE
        return OpenVinoEngine(
            entry_dir / ENGINE_FILE,
            dtype=target.dtype,
            threads=options.threads,
            # the build stored it; without it (an entry built elsewhere) compile in memory
            compiled_path=compiled if compiled.is_file() else None,
        )
    if target.engine == "trt" and target.profiles is not None:
        from tei_ort.engines.trt_engine import TrtEngine

        return TrtEngine(
            entry_dir / PLAN_FILE,
            plan=target.profiles,
            device_id=options.device_id,
            dtype=target.dtype,
        )
    return OrtEngine(
        entry_dir / ENGINE_FILE,
        providers=target.providers,
        provider_options=target.provider_options or None,
        threads=options.threads,
        optimized_path=optimized_path,
        dtype=target.dtype,
    )


def load_model(
    options: ModelOptions, progress: Progress = QUIET, *, download_bar: type[Any] | None = None
) -> LoadedModel:
    """Everything ``serve`` needs: model info, tokenizer, a warmed-up engine."""
    prepared = prepare_engine(options, progress, download_bar=download_bar)
    info = prepared.info
    seconds = dict(prepared.seconds)
    t = time.perf_counter()
    tokenizer = Tokenizer.from_dir(info.path)
    stack = DenseStack.load(info.dense_layers) if info.dense_layers else None
    dense = pooled_transform(info, stack)  # pplx models quantize before any Dense
    late = load_late_heads(info, tokenizer)
    progress("loading the engine")
    engine = open_engine(prepared.entry_dir, prepared.target, options, optimized=prepared.optimized)
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
        late=late,
        entry_dir=prepared.entry_dir,
        built=prepared.built,
        seconds=seconds,
    )


def load_from_settings(
    settings: Settings, progress: Progress = QUIET, *, download_bar: type[Any] | None = None
) -> LoadedModel:
    return load_model(ModelOptions.from_settings(settings), progress, download_bar=download_bar)


def warm_up(engine: Engine, pad_id: int) -> None:
    """Run one small batch, so the first request is not the one that pays for it."""
    # two rows of 4 and 3 tokens, padded to 8; ids below 100 exist in every vocabulary
    mask = (np.arange(8)[None, :] < np.array([[4], [3]])).astype(np.int64)  # (2, 8)
    ids = np.where(mask == 1, 99, pad_id).astype(np.int64)  # (2, 8)
    try:
        engine.run(EngineInputs(ids, mask, np.zeros_like(ids)))
    except Exception as exc:
        raise EngineError(f"the engine failed its warm-up run: {exc}") from exc
