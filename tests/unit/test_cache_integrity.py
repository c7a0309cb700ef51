"""Damaged or unfinished engine cache entries are rebuilt or refused, never loaded."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tei_ort.errors import EngineCacheError
from tei_ort.model import cache as cache_module
from tei_ort.model.cache import CacheKey, EngineCache, weights_digest
from tei_ort.model.manifest import MANIFEST_FILE, read_manifest
from tests.support.cache_keys import KEY


class Counting:
    """A fake build and optimize that count their calls."""

    def __init__(self) -> None:
        self.builds = 0
        self.optimizations = 0

    def build(self, tmp: Path) -> None:
        self.builds += 1
        (tmp / "model.onnx").write_bytes(b"graph" * 1000)

    def optimize(self, model_path: Path, out_dir: Path) -> None:
        self.optimizations += 1
        (out_dir / "model.opt.onnx").write_bytes(model_path.read_bytes().upper())


def _built(root: Path) -> tuple[EngineCache, Counting, Path]:
    cache, calls = EngineCache(root), Counting()
    entry = cache.get_or_build(KEY, calls.build, calls.optimize)
    assert entry.built and entry.optimized and (calls.builds, calls.optimizations) == (1, 1)
    return cache, calls, entry.path


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*") if p.name.startswith((".building", ".stale")))


@contextlib.contextmanager
def _read_only() -> Iterator[OSError | None]:
    yield OSError(errno.EROFS, "Read-only file system", "/cache")


def test_entry_is_recorded_and_readable_by_everyone(tmp_path: Path) -> None:
    _, _, entry = _built(tmp_path)
    records = read_manifest(entry)
    assert records is not None
    assert set(records) == {"key.json", "model.onnx", "model.opt.onnx"}
    assert records["model.onnx"].size == 5000
    assert stat.S_IMODE(entry.stat().st_mode) == 0o755
    for path in entry.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_complete_entry_is_a_hit(tmp_path: Path) -> None:
    cache, calls, entry = _built(tmp_path)
    again = cache.get_or_build(KEY, calls.build, calls.optimize)
    assert (again.path, again.built, again.optimized) == (entry, False, True)
    assert (calls.builds, calls.optimizations) == (1, 1)


@pytest.mark.parametrize("damage", ["no key.json", "no manifest", "truncated", "zeroed"])
def test_damaged_graph_is_rebuilt_once(tmp_path: Path, damage: str) -> None:
    cache, calls, entry = _built(tmp_path)
    if damage == "no key.json":
        (entry / "key.json").unlink()
    elif damage == "no manifest":  # an entry of a build killed before its last step
        (entry / MANIFEST_FILE).unlink()
    elif damage == "truncated":
        os.truncate(entry / "model.onnx", 100)
    else:
        with (entry / "model.onnx").open("r+b") as handle:
            handle.seek(1000)
            handle.write(b"\0" * 1000)
    assert not cache.check(KEY).complete
    rebuilt = cache.get_or_build(KEY, calls.build, calls.optimize)
    assert rebuilt.built and rebuilt.path == entry and cache.check(KEY).complete
    assert (calls.builds, calls.optimizations) == (2, 2)
    assert _leftovers(tmp_path) == []
    # and it stays fixed: the next start is a plain hit
    assert not cache.get_or_build(KEY, calls.build, calls.optimize).built
    assert calls.builds == 2


@pytest.mark.parametrize("damage", ["truncated", "zeroed", "missing"])
def test_damaged_optimized_graph_is_optimized_again(tmp_path: Path, damage: str) -> None:
    cache, calls, entry = _built(tmp_path)
    optimized = entry / "model.opt.onnx"
    good = optimized.read_bytes()
    if damage == "truncated":
        os.truncate(optimized, 10)
    elif damage == "zeroed":
        with optimized.open("r+b") as handle:
            handle.seek(100)
            handle.write(b"\0" * 100)
    else:
        optimized.unlink()
    repaired = cache.get_or_build(KEY, calls.build, calls.optimize)
    assert repaired.built and repaired.optimized
    assert (calls.builds, calls.optimizations) == (1, 2)  # model.onnx was not exported again
    assert optimized.read_bytes() == good and cache.check(KEY).complete
    assert _leftovers(tmp_path) == []


def test_read_only_cache_refuses_a_damaged_graph(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, calls, entry = _built(tmp_path)
    os.truncate(entry / "model.onnx", 100)
    monkeypatch.setattr(cache_module, "build_lock", lambda _: _read_only())
    with pytest.raises(EngineCacheError, match=r"model\.onnx: 100 bytes, the build wrote 5000"):
        cache.get_or_build(KEY, calls.build, calls.optimize)
    with pytest.raises(EngineCacheError, match="run `tei-ort build`"):
        cache.get_or_build(
            CacheKey(**{**KEY.__dict__, "dtype": "int8"}), calls.build, calls.optimize
        )
    assert calls.builds == 1


def test_read_only_cache_with_a_damaged_optimized_graph_runs_the_intact_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, calls, entry = _built(tmp_path)
    os.truncate(entry / "model.opt.onnx", 10)
    monkeypatch.setattr(cache_module, "build_lock", lambda _: _read_only())
    found = cache.get_or_build(KEY, calls.build, calls.optimize)
    assert (found.built, found.optimized) == (False, False)
    assert (calls.builds, calls.optimizations) == (1, 1)


def test_debris_of_killed_builds_is_removed(tmp_path: Path) -> None:
    cache, calls, entry = _built(tmp_path)
    old = time.time() - 3600
    dead = entry.parent / ".building-dead"
    dead.mkdir()
    (dead / "model.onnx").write_bytes(b"half")
    stale_tmp = entry / ".model.opt.onnx.123.tmp"
    stale_tmp.write_bytes(b"half")
    memo_tmp = tmp_path / "weights-digests.123.tmp"
    memo_tmp.write_text("{")
    for path in (dead / "model.onnx", dead, stale_tmp, memo_tmp):
        os.utime(path, (old, old))
    young = entry.parent / ".building-live"  # a build on another host may own it
    young.mkdir()
    # any build of the model cleans up: here one for another dtype
    cache.get_or_build(CacheKey(**{**KEY.__dict__, "dtype": "int8"}), calls.build, calls.optimize)
    assert not dead.exists() and not stale_tmp.exists() and not memo_tmp.exists()
    assert young.is_dir()


def test_a_start_on_a_complete_entry_cleans_debris_too(tmp_path: Path) -> None:
    cache, calls, entry = _built(tmp_path)
    dead = entry.parent / ".building-dead"
    dead.mkdir()
    os.utime(dead, (time.time() - 3600,) * 2)
    assert not cache.get_or_build(KEY, calls.build, calls.optimize).built
    assert not dead.exists()


def test_concurrent_starts_build_once(tmp_path: Path) -> None:
    cache, calls = EngineCache(tmp_path), Counting()

    def slow_build(tmp: Path) -> None:
        time.sleep(0.3)  # long enough for the other start to find the lock taken
        calls.build(tmp)

    with ThreadPoolExecutor(2) as pool:
        found = list(pool.map(lambda _: cache.get_or_build(KEY, slow_build, calls.optimize), "ab"))
    assert calls.builds == 1 and sorted(f.built for f in found) == [False, True]
    assert found[0].path == found[1].path and _leftovers(tmp_path) == []


@pytest.mark.parametrize("memo", ["[1, 2]", '{"a": 1}', "not json", '"text"'])
def test_malformed_digest_memo_is_treated_as_empty(tmp_path: Path, memo: str) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"weights")
    expected = weights_digest([weights])
    (tmp_path / "weights-digests.json").write_text(memo)
    assert weights_digest([weights], memo_dir=tmp_path) == expected
    assert isinstance(json.loads((tmp_path / "weights-digests.json").read_text()), dict)
