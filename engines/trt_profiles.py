"""TensorRT at run time: the optimization profiles that cover the batcher's shapes.

The profiles are pure functions of the batch limits (tested without a GPU), shared by the
build (``exporters.tensorrt``) and the engine (``trt_engine``). Sequence lengths are
split into segments (up to 64 tokens, then doubling: 65-128, 129-256, ...); each segment's
profile takes batches from 1 up to the largest batch the budget allows at the segment's
shortest bucket. Every (batch, length) the batcher can form falls in exactly one profile;
anything else is refused at run time (:func:`select_profile`), never answered by
rebuilding an engine mid-traffic.

``tensorrt`` is imported only inside :func:`import_tensorrt`, so CPU installs never load it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from tei_ort.engines.errors import EngineError
from tei_ort.engines.gpu_stack import TENSORRT_INSTALL, supported_tensorrt
from tei_ort.engines.shapes import BatchLimits

PLAN_FILE = "model.plan"
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
    """The ``tensorrt`` module, when its major is one tei-ort supports (10 or 11)."""
    try:
        trt = importlib.import_module("tensorrt")
    except ModuleNotFoundError as exc:
        raise EngineError(
            f"the TensorRT engine needs the `tensorrt` package: {TENSORRT_INSTALL}"
        ) from exc
    except (ImportError, OSError) as exc:  # the bindings are there, libnvinfer is not
        raise EngineError(f"TensorRT does not load ({exc}): {TENSORRT_INSTALL}") from exc
    supported_tensorrt(str(trt.__version__))
    return trt


def tensorrt_version() -> str:
    return str(import_tensorrt().__version__)
