"""The OpenVINO engine on a tiny random BERT: parity with ONNX Runtime, micro-batches,
the compiled model in the cache entry, and memory over many distinct shapes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tei_ort.engines import openvino_engine
from tei_ort.engines.base import EngineInputs, OutputName
from tei_ort.engines.openvino_engine import OpenVinoEngine, compile_config
from tei_ort.engines.ort_engine import OrtEngine
from tei_ort.exporters.export import Variant, export_to_file
from tei_ort.model.info import Head
from tests.support.cpu import needs_openvino
from tests.support.tiny_models import make_model, mixed_batch

pytestmark = needs_openvino


def _export(out: Path, head: Head) -> Path:
    make_model("bert", head.value, out)
    config = json.loads((out / "config.json").read_text())
    path = out / "model.onnx"
    export_to_file(config, [out / "model.safetensors"], head, path, Variant.PLAIN)
    return path


@pytest.fixture(scope="module")
def plain_graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(tmp_path_factory.mktemp("tiny-bert"), Head.BASE)


@pytest.fixture(scope="module")
def splade_graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(tmp_path_factory.mktemp("tiny-splade"), Head.SPLADE)


def _inputs(seed: int = 0) -> EngineInputs:
    batch = mixed_batch("bert", seed)
    return EngineInputs(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])


def test_float32_matches_onnxruntime(plain_graph: Path) -> None:
    inputs = _inputs()
    ours = OpenVinoEngine(plain_graph, dtype="float32", threads=1).run(inputs)
    ref = OrtEngine(plain_graph, threads=1).run(inputs)
    mask = inputs.attention_mask[:, :, None].astype(bool)  # (B, T, 1)
    assert ours.shape == ref.shape and ours.dtype == np.float32
    assert np.abs(np.where(mask, ours - ref, 0)).max() < 1e-4


def test_engine_asks_for_exact_lengths_and_says_its_dtype(plain_graph: Path) -> None:
    engine = OpenVinoEngine(plain_graph, dtype="float32", threads=1)
    assert engine.pad_multiple == 1 and engine.dtype == "float32"
    assert engine.output_name is OutputName.LAST_HIDDEN_STATE and engine.uses_token_type_ids


def test_micro_batches_give_the_whole_batch_answer(plain_graph: Path) -> None:
    inputs = _inputs(1)  # 4 rows x 24 tokens = 96 padded tokens
    whole = OpenVinoEngine(plain_graph, dtype="float32", threads=1, chunk_tokens=None)
    pieces = OpenVinoEngine(plain_graph, dtype="float32", threads=1, chunk_tokens=30)
    mask = inputs.attention_mask[:, :, None].astype(bool)  # (B, T, 1)
    a, b = whole.run(inputs), pieces.run(inputs)
    assert np.abs(np.where(mask, a - b, 0)).max() < 1e-5


def test_a_batch_of_mixed_lengths_runs_as_pieces_with_the_whole_batch_answer(
    plain_graph: Path,
) -> None:
    inputs = _inputs(1)  # 4 rows of different lengths, padded to the longest
    whole = OpenVinoEngine(plain_graph, dtype="float32", threads=1, chunk_tokens=None)
    cut = OpenVinoEngine(plain_graph, dtype="float32", threads=1, chunk_tokens=4096, call_tokens=0)
    calls: list[tuple[int, int]] = []
    run_piece = cut._run

    def counted(piece: EngineInputs) -> np.ndarray:
        calls.append((piece.batch_size, piece.seq_len))
        return run_piece(piece)

    cut._run = counted  # type: ignore[method-assign]
    mask = inputs.attention_mask[:, :, None].astype(bool)  # (B, T, 1)
    a, b = whole.run(inputs), cut.run(inputs)
    assert len(calls) > 1 and sum(rows for rows, _ in calls) == inputs.batch_size
    assert a.shape == b.shape
    assert np.abs(np.where(mask, a - b, 0)).max() < 1e-5


def test_compiled_model_is_stored_then_imported(plain_graph: Path, tmp_path: Path) -> None:
    blob = tmp_path / "model.openvino.blob"
    first = OpenVinoEngine(plain_graph, dtype="float32", threads=1, compiled_path=blob)
    assert blob.is_file() and blob.stat().st_size > 0
    assert not list(tmp_path.glob(".*.tmp"))
    mtime = blob.stat().st_mtime_ns
    second = OpenVinoEngine(plain_graph, dtype="float32", threads=1, compiled_path=blob)
    assert blob.stat().st_mtime_ns == mtime  # imported, not compiled and written again
    inputs = _inputs()
    np.testing.assert_array_equal(first.run(inputs), second.run(inputs))


def test_splade_head_runs_apart_and_both_compiled_stages_are_imported(
    splade_graph: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bf16 engine's two stages (encoder, float32 head), run in float32 so that any
    x86 CPU covers the cut, the stored blobs and their import."""
    monkeypatch.setattr(openvino_engine, "SPLIT_HEAD_DTYPES", frozenset({"float32"}))
    blob = tmp_path / openvino_engine.COMPILED_FILE
    head_blob = tmp_path / openvino_engine.COMPILED_HEAD_FILE
    split = OpenVinoEngine(splade_graph, dtype="float32", threads=1, compiled_path=blob)
    assert len(split.stages) == 2 and blob.is_file() and head_blob.is_file()
    assert split.output_name is OutputName.SPARSE_EMBEDDING
    mtimes = (blob.stat().st_mtime_ns, head_blob.stat().st_mtime_ns)
    imported = OpenVinoEngine(splade_graph, dtype="float32", threads=1, compiled_path=blob)
    assert len(imported.stages) == 2
    assert (blob.stat().st_mtime_ns, head_blob.stat().st_mtime_ns) == mtimes
    monkeypatch.setattr(openvino_engine, "SPLIT_HEAD_DTYPES", frozenset())
    whole = OpenVinoEngine(splade_graph, dtype="float32", threads=1)
    assert len(whole.stages) == 1
    inputs = _inputs()
    ref = OrtEngine(splade_graph, threads=1).run(inputs)  # (B, vocab)
    for engine in (split, imported, whole):
        np.testing.assert_allclose(engine.run(inputs), ref, rtol=1e-4, atol=1e-4)


def test_a_broken_compiled_model_is_compiled_again(plain_graph: Path, tmp_path: Path) -> None:
    blob = tmp_path / "model.openvino.blob"
    blob.write_bytes(b"not a compiled model")
    engine = OpenVinoEngine(plain_graph, dtype="float32", threads=1, compiled_path=blob)
    assert engine.run(_inputs()).shape[0] == 4
    assert blob.stat().st_size > 100


def test_unknown_dtype_is_refused() -> None:
    from tei_ort.errors import EngineError

    with pytest.raises(EngineError, match="bfloat16"):
        compile_config("float16", 1)


def test_memory_stays_bounded_over_many_shapes(plain_graph: Path) -> None:
    """A runtime that prepares kernels per shape must not keep every shape forever."""
    engine = OpenVinoEngine(plain_graph, dtype="float32", threads=1)
    rng = np.random.default_rng(0)

    def rss_mb() -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def run(rows: int, length: int) -> None:
        ids = rng.integers(5, 100, (rows, length)).astype(np.int64)  # (b, t)
        engine.run(EngineInputs(ids, np.ones_like(ids), np.zeros_like(ids)))

    # every shape of up to 6 rows x 48 tokens once: what it keeps per shape is kept now
    for rows in range(1, 7):
        for length in range(1, 49):
            run(rows, length)
    before = rss_mb()
    for _ in range(600):
        run(int(rng.integers(1, 7)), int(rng.integers(1, 49)))
    assert rss_mb() - before < 8


def test_openvino_is_imported_without_its_usage_telemetry(tmp_path: Path) -> None:
    # a fresh interpreter: this one may have imported openvino already; CI=true would
    # make the telemetry decline by itself, so it is unset
    script = (
        "from tei_ort.engines.openvino_runtime import import_openvino\n"
        "import_openvino()\n"
        "import openvino.tools.ovc.telemetry_utils as utils\n"
        "print(utils.tm.__name__)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["openvino.tools.ovc.telemetry_stub"]
    assert not (tmp_path / "intel").exists()  # no client id written for the analytics
