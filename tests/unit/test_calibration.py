"""The int8 / uint8 calibration: computed by `tei-ort build`, kept in the engine cache entry
and its manifest, the same on a rebuild, added to an entry built before it existed."""

from __future__ import annotations

import contextlib
import errno
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import tei_ort
from tei_ort.cli.commands import main
from tei_ort.model import cache as cache_module
from tei_ort.model import calibration as calibration_module
from tei_ort.model.calibration import (
    CALIBRATION_SET,
    calibration_file,
    calibration_texts,
    read_calibration,
)
from tei_ort.model.manifest import MANIFEST_FILE, check_entry, read_manifest, write_manifest
from tei_ort.serving.embedding_types import EmbeddingType, quantize
from tests.support.tiny_embedder import make_embedder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_embedder(tmp_path_factory.mktemp("tiny-embedder"))


def _entry(model: tei_ort.api.Model) -> Path:
    entry = model.loaded.entry_dir
    assert entry is not None
    return entry


def test_the_calibration_set_is_multilingual_and_of_mixed_lengths() -> None:
    texts = calibration_texts()
    assert len(texts) >= 64 and len(set(texts)) == len(texts)
    lengths = sorted(len(t) for t in texts)
    assert lengths[0] <= 5 and lengths[-1] >= 300
    scripts = {
        "latin": "a",
        "cyrillic": "\u0430",
        "cjk": "\u4e00",
        "arabic": "\u0627",
        "devanagari": "\u0905",
        "hangul": "\uac00",
    }
    for name, sample in scripts.items():
        block = ord(sample) >> 8
        assert any(ord(c) >> 8 == block for t in texts for c in t), name


def test_build_stores_the_calibration_and_a_rebuild_gives_the_same_ranges(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first_cache, second_cache = tmp_path / "a", tmp_path / "b"
    for cache in (first_cache, second_cache):
        assert main(["build", "--model-id", str(tiny), "--engine-cache", str(cache)]) == 0
    entries = [Path(line) for line in capsys.readouterr().out.split()]
    assert len(entries) == 2
    model = tei_ort.load(str(tiny), engine_cache=str(first_cache))
    name = calibration_file(model.info)
    assert name.startswith(CALIBRATION_SET)
    stored = []
    for entry in entries:
        assert name in (read_manifest(entry) or {})  # recorded (size and CRC-32)
        assert check_entry(entry, (name,)).complete
        vectors = read_calibration(entry, model.info)
        assert vectors is not None and vectors.shape == (len(calibration_texts()), 32)
        stored.append(vectors)
    assert np.array_equal(stored[0], stored[1])  # the rebuild: the same vectors, bit for bit
    calibration = model.calibrator.get()
    assert calibration.stored and np.array_equal(calibration.vectors, stored[0])
    # and the in-process API quantizes over them: the ranges of normalized vectors
    floats = model.embed(["hello world", "typed embeddings"])
    codes = model.embed(["hello world", "typed embeddings"], embedding_type="int8")
    assert np.array_equal(codes, quantize(floats, calibration.ranges(None, True), unsigned=False))
    assert model.embed("x", embedding_type="ubinary").shape == (1, 4)
    model.close()


def test_an_entry_built_before_calibration_is_extended(tiny: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    model = tei_ort.load(str(tiny), engine_cache=str(cache))
    model.calibrator.get()  # first use: computed and stored in the entry
    entry = _entry(model)
    name = calibration_file(model.info)
    expected = read_calibration(entry, model.info)
    assert expected is not None
    model.close()
    # the entry as an older tei-ort left it: no calibration file, a manifest without it
    (entry / name).unlink()
    write_manifest(entry)
    assert name not in json.loads((entry / MANIFEST_FILE).read_text())["files"]
    again = tei_ort.load(str(tiny), engine_cache=str(cache))
    assert _entry(again) == entry  # the same entry: the graph was not rebuilt
    calibration = again.calibrator.get()
    assert calibration.stored and np.array_equal(calibration.vectors, expected)
    assert name in json.loads((entry / MANIFEST_FILE).read_text())["files"]
    again.close()


@contextlib.contextmanager
def read_only(_: Path) -> Iterator[OSError]:
    """What build_lock says of a cache it cannot write (root ignores chmod)."""
    yield PermissionError(errno.EACCES, "Permission denied")


def test_a_read_only_cache_calibrates_in_memory(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    model = tei_ort.load(str(tiny), engine_cache=str(cache))
    entry = _entry(model)
    model.close()

    monkeypatch.setattr(calibration_module, "build_lock", read_only)
    again = tei_ort.load(str(tiny), engine_cache=str(cache))
    calibration = again.calibrator.get()
    assert not calibration.stored
    assert not any(p.name.startswith(CALIBRATION_SET) for p in entry.iterdir())
    assert again.embed("x", embedding_type=EmbeddingType.UINT8.value).dtype == np.uint8
    again.close()


def test_damaged_calibration_is_computed_again_without_rebuilding_the_graph(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    model = tei_ort.load(str(tiny), engine_cache=str(cache))
    expected = model.calibrator.get().vectors
    entry = _entry(model)
    name = calibration_file(model.info)
    model.close()
    graph = (entry / "model.onnx").stat().st_mtime_ns

    def damage() -> None:
        data = bytearray((entry / name).read_bytes())
        data[-16:] = bytes(16)  # the same size, other content: only the CRC-32 tells
        (entry / name).write_bytes(bytes(data))

    # read-only: the graphs are used as they are, the vectors computed in memory
    damage()
    with monkeypatch.context() as patch:
        patch.setattr(cache_module, "build_lock", read_only)
        patch.setattr(calibration_module, "build_lock", read_only)
        readonly = tei_ort.load(str(tiny), engine_cache=str(cache))
        calibration = readonly.calibrator.get()
        assert not calibration.stored and np.array_equal(calibration.vectors, expected)
        readonly.close()
    # writable: the damaged file is dropped, computed again and stored; the graph stays
    again = tei_ort.load(str(tiny), engine_cache=str(cache))
    assert _entry(again) == entry and not again.loaded.built
    assert (entry / "model.onnx").stat().st_mtime_ns == graph
    calibration = again.calibrator.get()
    assert calibration.stored and np.array_equal(calibration.vectors, expected)
    assert check_entry(entry, (name,)).complete
    again.close()
