"""TensorRT engines: optimization profiles that cover the batcher's shapes, and the build.

The profiles are pure functions of the batch limits (tested without a GPU). The build
parses the plain-opset float32 graph (``Variant.PLAIN``: LayerNormalization, MatMul,
Softmax, which TensorRT's parser fuses into its own attention and norm kernels) and lets
TensorRT run it in float16, with normalization computed in float32 and the summing
reductions and log/exp pinned to float32 (the same split as ``exporters.fp16``).

Profiles: sequence lengths are split into segments (up to 64 tokens, then doubling:
65-128, 129-256, ...); each segment's profile takes batches from 1 up to the largest batch
the budget allows at the segment's shortest bucket. Every (batch, length) the batcher can
form falls in exactly one profile; anything else is refused at run time
(:func:`select_profile`), never answered by rebuilding an engine mid-traffic.

``tensorrt`` is imported only inside :func:`build_engine` and :func:`tensorrt_version`,
so CPU installs never load it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from engines.shapes import BatchLimits
from tei_ort.errors import EngineError

PLAN_FILE = "model.plan"
#: TensorRT 10 reads int64 inputs and has the named-tensor API the engine uses
MIN_TENSORRT_MAJOR = 10
FIRST_SEGMENT = 64

Shape = tuple[int, int]  # (batch, sequence)


@dataclass(frozen=True)
class ShapeRange:
    """One optimization profile: the same (B, T) range for every (B, T) input."""

    min: Shape
    opt: Shape
    max: Shape

    def covers(self, batch: int, seq_len: int) -> bool:
        return self.min[0] <= batch <= self.max[0] and self.min[1] <= seq_len <= self.max[1]

    def describe(self) -> str:
        return (
            f"b{self.min[0]}-{self.max[0]}xt{self.min[1]}-{self.max[1]}@{self.opt[0]}x{self.opt[1]}"
        )


@dataclass(frozen=True)
class ProfilePlan:
    ranges: tuple[ShapeRange, ...]

    def describe(self) -> str:
        """A stable text for the engine cache key: any change rebuilds the engine."""
        return "profiles:" + ",".join(r.describe() for r in self.ranges)

    @property
    def max_batch(self) -> int:
        return max(r.max[0] for r in self.ranges)


def segments(longest: int, first: int = FIRST_SEGMENT) -> list[tuple[int, int]]:
    """Inclusive sequence-length segments (1..first, first+1..2*first, ...) up to ``longest``."""
    found: list[tuple[int, int]] = []
    low, high = 1, min(first, longest)
    while True:
        found.append((low, high))
        if high >= longest:
            return found
        low, high = high + 1, min(high * 2, longest)


def plan_profiles(limits: BatchLimits, first_segment: int = FIRST_SEGMENT) -> ProfilePlan:
    """Profiles that cover every batch shape the batcher forms under ``limits``."""
    buckets = limits.buckets()
    ranges = []
    for low, high in segments(limits.longest_bucket, first_segment):
        inside = [b for b in buckets if low <= b <= high]
        if not inside:
            continue
        # shortest bucket -> most rows; the longest one is what TensorRT tunes for
        top = limits.max_batch(inside[0])
        ranges.append(
            ShapeRange(
                min=(1, low),
                opt=(limits.max_batch(inside[-1]), inside[-1]),
                max=(top, high),
            )
        )
    return ProfilePlan(tuple(ranges))


def select_profile(plan: ProfilePlan, batch: int, seq_len: int) -> int:
    """The index of the profile that runs a (batch, seq_len) input; refuses any other."""
    for index, shape_range in enumerate(plan.ranges):
        if shape_range.covers(batch, seq_len):
            return index
    raise EngineError(
        f"a batch of {batch} x {seq_len} tokens is outside every TensorRT optimization "
        f"profile of this engine ({plan.describe()}); the engine is built for the "
        "server's --max-batch-tokens, --max-batch-requests and the model's maximum input "
        "length: rebuild it with `tei-ort build --target trt` and the same settings"
    )


def import_tensorrt() -> ModuleType:
    try:
        trt = importlib.import_module("tensorrt")
    except ImportError as exc:
        raise EngineError(
            "the TensorRT engine needs the `tensorrt` package (pip install tensorrt-cu12)"
        ) from exc
    major = int(str(trt.__version__).split(".")[0])
    if major < MIN_TENSORRT_MAJOR:
        raise EngineError(
            f"TensorRT {trt.__version__} is too old: tei-ort needs TensorRT "
            f"{MIN_TENSORRT_MAJOR} or newer"
        )
    return trt


def tensorrt_version() -> str:
    return str(import_tensorrt().__version__)


def build_engine(
    onnx_path: Path,
    plan_path: Path,
    plan: ProfilePlan,
    *,
    fp16: bool = True,
    workspace_bytes: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Parse ``onnx_path`` and write a serialized engine with ``plan``'s profiles."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if workspace_bytes is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
        pinned = keep_accurate_layers(trt, network)
        if pinned:
            config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
    inputs = [network.get_input(i).name for i in range(network.num_inputs)]
    for shape_range in plan.ranges:
        profile = builder.create_optimization_profile()
        for name in inputs:  # every input is (B, T)
            profile.set_shape(name, shape_range.min, shape_range.opt, shape_range.max)
        config.add_optimization_profile(profile)
    if progress is not None:
        progress(f"building the TensorRT engine ({len(plan.ranges)} profiles); this takes minutes")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"TensorRT could not build an engine from {onnx_path}")
    plan_path.write_bytes(memoryview(serialized).tobytes())


def keep_accurate_layers(trt: Any, network: Any) -> int:
    """Normalization computed in float32; summing reductions, log and exp pinned to it.

    Returns how many layers got a precision constraint (normalization layers get a compute
    precision, which needs no constraint flag). ReduceMax / ReduceMin stay float16: they
    are exact, and SPLADE's max reads a (B, T, V) tensor that float32 would double.
    """
    pinned = 0
    summing = {
        trt.ReduceOperation.SUM,
        trt.ReduceOperation.AVG,
        trt.ReduceOperation.PROD,
    }
    exponential = {trt.UnaryOperation.LOG, trt.UnaryOperation.EXP}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type == trt.LayerType.NORMALIZATION:
            layer.__class__ = trt.INormalizationLayer  # the Python API's way to downcast
            layer.compute_precision = trt.float32
        elif layer.type == trt.LayerType.REDUCE:
            layer.__class__ = trt.IReduceLayer
            if layer.op in summing:
                _pin(trt, layer)
                pinned += 1
        elif layer.type == trt.LayerType.UNARY:
            layer.__class__ = trt.IUnaryLayer
            if layer.op in exponential:
                _pin(trt, layer)
                pinned += 1
    return pinned


def _pin(trt: Any, layer: Any) -> None:
    layer.precision = trt.float32
    for out in range(layer.num_outputs):
        layer.set_output_type(out, trt.float32)
