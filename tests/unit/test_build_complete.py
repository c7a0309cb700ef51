"""``tei-ort build`` leaves a complete engine: starts read it and write nothing, and a
damaged optimized graph is optimized again from the intact model.onnx, never loaded."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from tei_ort.cli.commands import main
from tei_ort.engines.base import EngineInputs
from tei_ort.model import build, loading
from tei_ort.model import cache as cache_module
from tei_ort.model.cache import ENGINE_FILE, KEY_FILE, OPTIMIZED_FILE
from tei_ort.model.hub import default_model_path
from tei_ort.model.loading import LoadedModel, ModelOptions, load_model
from tei_ort.model.manifest import MANIFEST_FILE
from tests.support.cpu import needs_native_bf16, needs_openvino, openvino_in_float32


@dataclass(frozen=True)
class Built:
    root: Path
    stderr: str  # what `tei-ort build` showed (not a terminal: plain lines)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("built") / "engines"
    args = ["build", "--model-id", str(default_model_path()), "--engine-cache", str(root)]
    shown = io.StringIO()
    with contextlib.redirect_stderr(shown), contextlib.redirect_stdout(io.StringIO()):
        assert main(args) == 0
    return Built(root, shown.getvalue())


@pytest.fixture
def cache(built: Built, tmp_path: Path) -> Path:
    copy = tmp_path / "engines"
    shutil.copytree(built.root, copy)
    return copy


def test_build_reports_each_step_in_plain_lines(built: Built) -> None:
    lines = [line.split("] ", 1)[1] for line in built.stderr.splitlines()]
    exported = next(line for line in lines if line.startswith("exporting the weights ("))
    assert exported.endswith("MB)")  # the total, in bytes
    assert any(line.startswith("exporting the weights: done, ") for line in lines)
    assert any(line.startswith("optimizing the graph with ONNX Runtime: done") for line in lines)
    assert "\r" not in built.stderr and "\x1b" not in built.stderr  # no bars


def _entry(cache: Path) -> Path:
    (entry,) = (p.parent for p in cache.rglob(MANIFEST_FILE))
    return entry


def _load(cache: Path) -> LoadedModel:
    return load_model(ModelOptions(model_id=str(default_model_path()), engine_cache=str(cache)))


def _vectors(model: LoadedModel) -> NDArray[np.float32]:
    ids = np.array([[101, 7592, 2088, 102], [101, 2204, 102, 0]], dtype=np.int64)  # (2, 4)
    mask = (ids != 0).astype(np.int64)  # (2, 4)
    return model.engine.run(EngineInputs(ids, mask, np.zeros_like(ids)))  # (2, 4, 384)


def _snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    return {
        str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns, p.lstat().st_mode)
        for p in root.rglob("*")
    }


def _no_export(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("model.onnx was exported again")

    monkeypatch.setattr(build, "export_to_file", fail)
    monkeypatch.setattr(build, "export_onnx", fail)


def _zero_4k(path: Path) -> None:
    with path.open("r+b") as handle:
        handle.seek(path.stat().st_size // 2)
        handle.write(b"\0" * 4096)


@contextlib.contextmanager
def _read_only(_: Path) -> Iterator[OSError | None]:
    yield OSError(errno.EROFS, "Read-only file system", str(_))


def test_build_leaves_nothing_for_serve_to_write(cache: Path) -> None:
    entry = _entry(cache)
    for name in (KEY_FILE, ENGINE_FILE, OPTIMIZED_FILE, MANIFEST_FILE):
        assert (entry / name).is_file(), name
    for path in [cache, *cache.rglob("*")]:  # what `chmod -R a-w` does
        path.chmod(path.stat().st_mode & ~0o222)
    before = _snapshot(cache)
    try:
        loaded = _load(cache)
    finally:
        for path in [cache, *cache.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
    assert not loaded.built and loaded.entry_dir == entry
    assert {k: v[:2] for k, v in _snapshot(cache).items()} == {k: v[:2] for k, v in before.items()}


@pytest.mark.parametrize("damage", ["zeroed", "truncated"])
def test_damaged_optimized_graph_is_optimized_again(
    cache: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    reference = _vectors(_load(cache))
    optimized = _entry(cache) / OPTIMIZED_FILE
    if damage == "zeroed":
        _zero_4k(optimized)
    else:
        os.truncate(optimized, optimized.stat().st_size // 2)
    _no_export(monkeypatch)
    repaired = _load(cache)
    assert repaired.built
    np.testing.assert_allclose(_vectors(repaired), reference, atol=1e-6)
    assert not _load(cache).built  # fixed for good


def test_read_only_cache_never_loads_a_damaged_optimized_graph(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = _vectors(_load(cache))
    _zero_4k(_entry(cache) / OPTIMIZED_FILE)
    monkeypatch.setattr(cache_module, "build_lock", _read_only)
    opened: list[bool] = []
    real_open = loading.open_engine

    def spy(*args: object, optimized: bool = True, **kwargs: object) -> object:
        opened.append(optimized)
        return real_open(*args, optimized=optimized, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(loading, "open_engine", spy)
    model = _load(cache)
    assert opened == [False]  # model.onnx, optimized in memory
    np.testing.assert_allclose(_vectors(model), reference, atol=1e-5)


def test_read_only_cache_refuses_a_damaged_graph(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tei_ort.errors import EngineCacheError

    _zero_4k(_entry(cache) / ENGINE_FILE)
    monkeypatch.setattr(cache_module, "build_lock", _read_only)
    with pytest.raises(EngineCacheError, match=r"model\.onnx: content differs"):
        _load(cache)


@pytest.mark.parametrize(
    "dtype",
    [
        pytest.param("bfloat16", marks=needs_native_bf16),
        # the same plumbing in float32, on any x86 CPU (tests/support/cpu.py)
        pytest.param("float32", marks=needs_openvino),
    ],
)
def test_an_openvino_build_stores_the_compiled_model_and_serve_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dtype: str
) -> None:
    """The OpenVINO engine (bf16, the default on CPUs with native bf16) is complete after
    `build` too: its compiled model is in the entry, and a start imports it without writing."""
    from tei_ort.engines.openvino_engine import COMPILED_FILE, OpenVinoEngine

    if dtype == "float32":
        openvino_in_float32(monkeypatch)
    root = tmp_path / "engines"
    args = ["build", "--model-id", str(default_model_path()), "--engine-cache", str(root)]
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        assert main([*args, "--dtype", dtype]) == 0
    entry = _entry(root)
    assert (entry / COMPILED_FILE).is_file()
    before = _snapshot(root)
    options = ModelOptions(model_id=str(default_model_path()), engine_cache=str(root), dtype=dtype)
    loaded = load_model(options)
    assert isinstance(loaded.engine, OpenVinoEngine) and not loaded.built
    assert (loaded.engine.compute_type, loaded.engine.dtype) == ("cpu", dtype)
    assert {k: v[:2] for k, v in _snapshot(root).items()} == {k: v[:2] for k, v in before.items()}
