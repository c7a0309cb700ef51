"""The engine cache: hits skip the export, any key change rebuilds, builds are atomic."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from tei_ort.errors import EngineCacheError
from tei_ort.model import build
from tei_ort.model import cache as cache_module
from tei_ort.model.cache import CacheKey, EngineCache, model_slug, weights_digest
from tei_ort.model.hub import default_model_path
from tei_ort.model.loading import ModelOptions, load_model, prepare_engine


def _key(**changes: str) -> CacheKey:
    parts = {
        "model_id": "org/model",
        "weights_digest": "abc",
        "exporter_version": "1",
        "target": "onnx-cpu",
        "dtype": "float32",
        "head": "base",
        "variant": "ort",
        "runtime": "onnxruntime-1.0",
    } | changes
    return CacheKey(**parts)


def _writes_model(calls: list[Path]) -> cache_module.Build:
    def build(tmp: Path) -> None:
        calls.append(tmp)
        (tmp / "model.onnx").write_bytes(b"graph")

    return build


def test_every_key_part_changes_the_entry() -> None:
    base = _key()
    for field in ("weights_digest", "exporter_version", "target", "dtype", "head", "runtime"):
        assert _key(**{field: "other"}).digest() != base.digest(), field
    assert _key().digest() == base.digest()


def test_hit_does_not_build_again(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    calls: list[Path] = []
    first = cache.get_or_build(_key(), _writes_model(calls))
    assert first.built and (first.path / "model.onnx").read_bytes() == b"graph"
    second = cache.get_or_build(_key(), _writes_model(calls))
    assert (second.path, second.built) == (first.path, False)
    assert len(calls) == 1
    third = cache.get_or_build(_key(dtype="int8"), _writes_model(calls))
    assert third.built and third.path != first.path


def test_failed_build_leaves_nothing(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)

    def broken(tmp: Path) -> None:
        (tmp / "model.onnx").write_bytes(b"half")
        raise RuntimeError("export crashed")

    with pytest.raises(RuntimeError, match="export crashed"):
        cache.get_or_build(_key(), broken)
    assert cache.lookup(_key()) is None
    assert [p.name for p in (tmp_path / model_slug("org/model")).iterdir()] == [".lock"]


def test_build_must_write_the_graph(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"model\.onnx"):
        EngineCache(tmp_path).get_or_build(_key(), lambda tmp: None)


def test_weights_digest_is_memoised_and_follows_changes(tmp_path: Path) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"one")
    first = weights_digest([weights], memo_dir=tmp_path / "memo")
    assert (tmp_path / "memo" / "weights-digests.json").is_file()
    assert weights_digest([weights], memo_dir=tmp_path / "memo") == first
    weights.write_bytes(b"two!")
    assert weights_digest([weights], memo_dir=tmp_path / "memo") != first


def test_model_slug() -> None:
    assert model_slug("BAAI/bge-small-en-v1.5") == "BAAI--bge-small-en-v1.5"
    assert "/" not in model_slug("/abs/path/to/model/")


def test_second_load_does_not_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    options = ModelOptions(model_id=str(default_model_path()), engine_cache=str(tmp_path))
    first = load_model(options)
    assert first.built

    def no_export(*args: object, **kwargs: object) -> None:
        raise AssertionError("exported again on a cache hit")

    monkeypatch.setattr(build, "export_onnx", no_export)
    second = load_model(options)
    assert not second.built
    assert second.entry_dir == first.entry_dir
    assert (second.entry_dir / cache_module.OPTIMIZED_FILE).is_file()


def test_changed_exporter_version_rebuilds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    options = ModelOptions(model_id=str(default_model_path()), engine_cache=str(tmp_path))
    first = prepare_engine(options)
    monkeypatch.setattr(build, "EXPORTER_VERSION", "999")
    second = prepare_engine(options)
    assert second.built and second.entry_dir != first.entry_dir


def test_a_cache_this_user_may_not_write_says_permission_denied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A root-owned /data for `docker run --user 1000` is not a "read-only cache": the error
    names what the system refused, where, and for which uid (issue #25, defect 3)."""
    root = tmp_path / "data"
    root.mkdir()
    if os.geteuid() == 0:  # root writes through any mode: refuse the way the kernel would
        real_mkdir = Path.mkdir

        def refuse(self: Path, *args: object, **kwargs: object) -> None:
            if self.is_relative_to(root):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
            real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(Path, "mkdir", refuse)
    else:
        root.chmod(0o555)
    calls: list[Path] = []
    with pytest.raises(EngineCacheError) as raised:
        EngineCache(root).get_or_build(_key(), _writes_model(calls))
    message = str(raised.value)
    assert "Permission denied" in message, message
    assert str(root / "org--model") in message, message
    assert f"uid {os.getuid()}" in message, message
    assert "read-only" not in message, message
    assert calls == []
