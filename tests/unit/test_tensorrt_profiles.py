"""TensorRT profile shapes and their cache key, as pure functions (no GPU, no tensorrt)."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pytest

from tei_ort.engines.base import OutputName
from tei_ort.engines.shapes import BatchLimits, graph_batch
from tei_ort.engines.trt_engine import buffer_elements
from tei_ort.engines.trt_profiles import plan_profiles, segments, select_profile
from tei_ort.errors import EngineError
from tei_ort.exporters.tensorrt import build_engine
from tei_ort.model.cache import CacheKey
from tei_ort.serving.batching import plan_batch

LIMITS = [
    BatchLimits(512, 16384),
    BatchLimits(512, 16384, max_batch_requests=32),
    BatchLimits(8192, 16384),
    BatchLimits(128, 1000),
    BatchLimits(500, 500),  # the longest bucket (500) takes one row; 30 x 16 fit the budget
    BatchLimits(40, 64, multiple=8),
]


@pytest.mark.parametrize("longest", [1, 16, 64, 65, 100, 512, 8192])
def test_segments_cover_every_length_once(longest: int) -> None:
    found = segments(longest)
    assert found[0][0] == 1 and found[-1][1] == longest
    for (_, high), (low, _) in itertools.pairwise(found):
        assert low == high + 1


@pytest.mark.parametrize("limits", LIMITS, ids=str)
def test_every_batch_the_batcher_forms_has_exactly_one_profile(limits: BatchLimits) -> None:
    plan = plan_profiles(limits)
    for seq_len in limits.buckets():
        for batch in range(1, limits.max_batch(seq_len) + 1):
            matching = [r for r in plan.ranges if r.covers(batch, seq_len)]
            assert len(matching) == 1, (batch, seq_len)
            assert plan.ranges[select_profile(plan, batch, seq_len)] is matching[0]


@pytest.mark.parametrize("limits", LIMITS, ids=str)
def test_profiles_agree_with_the_real_batcher(limits: BatchLimits) -> None:
    plan = plan_profiles(limits)
    rng = np.random.default_rng(0)
    for _ in range(50):
        lengths = rng.integers(1, limits.max_input_length + 1, size=rng.integers(1, 300))
        start = 0
        while start < len(lengths):
            count, padded = plan_batch(
                (int(n) for n in lengths[start:]),
                max_batch_tokens=limits.max_batch_tokens,
                max_batch_requests=limits.max_batch_requests,
                multiple=limits.multiple,
                cap=limits.max_input_length,
            )
            select_profile(plan, count, padded)  # never refused
            start += count


def test_profiles_follow_the_budget() -> None:
    plan = plan_profiles(BatchLimits(512, 16384))
    assert [(r.min[1], r.max[1]) for r in plan.ranges] == [
        (1, 64),
        (65, 128),
        (129, 256),
        (257, 512),
    ]
    # the most rows at the shortest bucket of each segment, tuned at its longest
    assert [r.max[0] for r in plan.ranges] == [1024, 204, 113, 60]
    assert [r.opt for r in plan.ranges] == [(256, 64), (128, 128), (64, 256), (32, 512)]
    assert plan.max_batch == 1024
    capped = plan_profiles(BatchLimits(512, 16384, max_batch_requests=32))
    assert capped.max_batch == 32


def test_outside_every_profile_is_refused() -> None:
    plan = plan_profiles(BatchLimits(512, 16384))
    with pytest.raises(EngineError, match=r"61 x 300 tokens is outside every TensorRT"):
        select_profile(plan, 61, 300)
    with pytest.raises(EngineError, match="tei-ort build --target trt"):
        select_profile(plan, 1, 513)
    with pytest.raises(EngineError):
        select_profile(plan, 0, 16)


def _key(extra: str) -> CacheKey:
    return CacheKey("m", "w", "1", "trt-sm90", "float16", "base", "plain", "tensorrt-10.9", extra)


def test_any_limit_change_changes_the_cache_key() -> None:
    base = plan_profiles(BatchLimits(512, 16384)).describe()
    changed = [
        plan_profiles(BatchLimits(256, 16384)).describe(),
        plan_profiles(BatchLimits(512, 8192)).describe(),
        plan_profiles(BatchLimits(512, 16384, max_batch_requests=64)).describe(),
    ]
    assert len({base, *changed}) == 4
    assert all(_key(c).digest() != _key(base).digest() for c in changed)
    assert plan_profiles(BatchLimits(512, 16384)).describe() == base  # stable across runs
    for part in ("target", "runtime"):  # compute capability and TensorRT version
        other = CacheKey(**{**_key(base).__dict__, part: "other"})
        assert other.digest() != _key(base).digest()


def test_buffers_hold_the_largest_profile() -> None:
    plan = plan_profiles(BatchLimits(512, 16384))
    tokens, hidden = buffer_elements(plan, OutputName.LAST_HIDDEN_STATE, 768)
    assert tokens == max(r.max[0] * r.max[1] for r in plan.ranges) == 1024 * 64
    assert hidden == tokens * 768
    _, sparse = buffer_elements(plan, OutputName.SPARSE_EMBEDDING, 30522)
    assert sparse == 1024 * 30522


def test_graph_batch_sizes() -> None:
    assert [graph_batch(b, 60) for b in (1, 2, 3, 5, 33, 60)] == [1, 2, 4, 8, 60, 60]
    with pytest.raises(ValueError):
        graph_batch(61, 60)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is here")
def test_build_without_tensorrt_names_the_package(tmp_path: Path) -> None:
    plan = plan_profiles(BatchLimits(64, 256))
    with pytest.raises(EngineError, match=r"pip install .tei-ort\[tensorrt\]."):
        build_engine(tmp_path / "model.onnx", tmp_path / "model.plan", plan)


def _fake_trt(monkeypatch: pytest.MonkeyPatch, builds: list[str]) -> None:
    """A TensorRT target and build on a machine without a GPU: the build writes a stub plan."""
    from tei_ort.exporters import tensorrt
    from tei_ort.exporters.export import Variant
    from tei_ort.model import build
    from tei_ort.model.options import ModelOptions
    from tei_ort.model.targets import EngineTarget

    def select_target(options: ModelOptions) -> EngineTarget:
        return EngineTarget(
            "trt-sm90", "float16", Variant.PLAIN, (), engine="trt", runtime="tensorrt-10.9.0"
        )

    def build_engine(onnx_path: Path, plan_path: Path, plan: object, **_: object) -> None:
        assert onnx_path.is_file()
        builds.append(plan.describe())  # type: ignore[attr-defined]
        plan_path.write_bytes(b"plan")

    monkeypatch.setattr(build, "select_target", select_target)
    monkeypatch.setattr(tensorrt, "build_engine", build_engine)


def test_engines_are_cached_per_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from tei_ort.model.hub import default_model_path
    from tei_ort.model.loading import ModelOptions, prepare_engine

    builds: list[str] = []
    _fake_trt(monkeypatch, builds)
    options = ModelOptions(model_id=str(default_model_path()), engine_cache=str(tmp_path))
    first = prepare_engine(options)
    assert first.built and (first.entry_dir / "model.plan").read_bytes() == b"plan"
    limits = BatchLimits(first.info.max_input_length, 16384)
    assert builds == [plan_profiles(limits).describe()]
    key = json.loads((first.entry_dir / "key.json").read_text())
    assert (key["target"], key["runtime"], key["variant"]) == (
        "trt-sm90",
        "tensorrt-10.9.0",
        "plain",
    )
    assert key["extra"] == builds[0]

    again = prepare_engine(options)  # a restart: the same key finds the engine
    assert not again.built and again.entry_dir == first.entry_dir and len(builds) == 1

    smaller = ModelOptions(
        model_id=str(default_model_path()), engine_cache=str(tmp_path), max_batch_tokens=4096
    )
    rebuilt = prepare_engine(smaller)  # another profile: another entry, built now
    assert rebuilt.built and rebuilt.entry_dir != first.entry_dir and len(builds) == 2
