"""The IOBinding engine's shape logic, and its binding code run on ONNX Runtime's CPU.

``OrtCudaEngine(device="cpu")`` runs the same bucket buffers, pointer bindings and output
copy as on a GPU; CUDA graphs themselves need a GPU (tests/gpu), but the batch padding
they need is exercised here with ``pad_batches=True``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from tei_ort.engines.base import EngineInputs, OutputName
from tei_ort.engines.ort_cuda import OrtCudaEngine, output_elements, run_shape
from tei_ort.engines.ort_engine import OrtEngine
from tei_ort.engines.shapes import BatchLimits
from tei_ort.errors import EngineError
from tei_ort.exporters.export import Variant, export_onnx
from tei_ort.exporters.fp16 import to_float16
from tei_ort.model.info import Head
from tests.support.graphs import checkpoint_files
from tests.support.tiny_models import make_model, mixed_batch

LIMITS = BatchLimits(max_input_length=64, max_batch_tokens=256)


def test_run_shape_buckets_and_refusals() -> None:
    plain = run_shape(LIMITS, 3, 24, cuda_graphs=False)
    assert (plain.bucket, plain.rows, plain.graph_id) == (32, 3, 0)
    shape = run_shape(LIMITS, 3, 24, cuda_graphs=True)
    assert (shape.bucket, shape.rows) == (32, 4) and shape.graph_id > 0
    assert run_shape(LIMITS, 8, 32, cuda_graphs=True).rows == 8  # 256 // 32
    with pytest.raises(EngineError, match="over the engine's buffers"):
        run_shape(LIMITS, 9, 32, cuda_graphs=False)
    with pytest.raises(EngineError, match="outside the engine's buckets"):
        run_shape(LIMITS, 1, 65, cuda_graphs=False)


def test_graph_ids_are_unique_per_bucket_and_rows() -> None:
    seen: dict[int, tuple[int, int]] = {}
    for seq_len in LIMITS.buckets():
        for batch in range(1, LIMITS.max_batch(seq_len) + 1):
            shape = run_shape(LIMITS, batch, seq_len, cuda_graphs=True)
            assert seen.setdefault(shape.graph_id, (shape.bucket, shape.rows)) == (
                shape.bucket,
                shape.rows,
            )


def test_output_buffer_fits_every_bucket() -> None:
    hidden = output_elements(LIMITS, OutputName.LAST_HIDDEN_STATE, 32)
    for seq_len in LIMITS.buckets():
        assert LIMITS.max_batch(seq_len) * seq_len * 32 <= hidden
    assert output_elements(LIMITS, OutputName.LOGITS, 3) == 16 * 3  # 256 // 16 rows


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    found = {}
    for head in ("base", "classifier", "splade"):
        root = tmp_path_factory.mktemp(head)
        make_model("bert", head, root)
        config = json.loads((root / "config.json").read_text())
        graph = export_onnx(config, checkpoint_files(root), Head(head), Variant.ORT)
        onnx.save_model(graph, str(root / "model.onnx"))
        onnx.save_model(to_float16(graph), str(root / "model16.onnx"))
        found[head] = root
    return found


def _inputs(rows: int) -> EngineInputs:
    batch = mixed_batch("bert")
    return EngineInputs(
        batch["input_ids"][:rows], batch["attention_mask"][:rows], batch["token_type_ids"][:rows]
    )


@pytest.mark.parametrize("pad_batches", [False, True])
@pytest.mark.parametrize("head", ["base", "classifier", "splade"])
def test_iobinding_matches_a_plain_session(
    graphs: dict[str, Path], head: str, pad_batches: bool
) -> None:
    ref = OrtEngine(graphs[head] / "model.onnx", threads=1)
    ours = OrtCudaEngine(
        graphs[head] / "model.onnx", limits=LIMITS, device="cpu", pad_batches=pad_batches
    )
    for rows in (1, 3, 4, 1):  # the (24-token) batch runs in the 32 bucket
        inputs = _inputs(rows)
        expected, got = ref.run(inputs), ours.run(inputs)
        assert got.shape == expected.shape and got.dtype == np.float32
        if got.ndim == 3:  # (B, T, H): padded positions hold nothing anyone reads
            real = inputs.attention_mask.astype(bool)  # (B, T)
            got, expected = got[real], expected[real]
        np.testing.assert_allclose(got, expected, atol=1e-5)
    ours.close()


def test_float16_graph_is_upcast_on_the_host(graphs: dict[str, Path]) -> None:
    ours = OrtCudaEngine(graphs["base"] / "model16.onnx", limits=LIMITS, device="cpu")
    ref = OrtEngine(graphs["base"] / "model.onnx", threads=1)
    inputs = _inputs(4)
    got, expected = ours.run(inputs), ref.run(inputs)
    assert got.dtype == np.float32
    valid = inputs.attention_mask.astype(bool)
    a, b = got[valid], expected[valid]
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    assert cos.min() >= 0.999


def test_oversized_batch_is_refused(graphs: dict[str, Path]) -> None:
    ours = OrtCudaEngine(graphs["classifier"] / "model.onnx", limits=LIMITS, device="cpu")
    ids = np.ones((9, 32), dtype=np.int64)
    with pytest.raises(EngineError, match="over the engine's buffers"):
        ours.run(EngineInputs(ids, np.ones_like(ids), np.zeros_like(ids)))
    assert ours.max_batch_size == 16


def test_cuda_target_caches_a_float16_graph(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tei_ort.model import build, loading
    from tei_ort.model.hub import default_model_path
    from tei_ort.model.targets import EngineTarget
    from tests.support.graphs import count_by_precision

    target = EngineTarget(
        "onnx-cuda-sm90", "float16", Variant.ORT, ("CUDAExecutionProvider",), engine="ort-cuda"
    )
    monkeypatch.setattr(build, "select_target", lambda options: target)
    options = loading.ModelOptions(model_id=str(default_model_path()), engine_cache=str(tmp_path))
    prepared = loading.prepare_engine(options)
    assert prepared.target.limits == BatchLimits(prepared.info.max_input_length, 16384)
    counts = count_by_precision(onnx.load(str(prepared.entry_dir / "model.onnx")))
    assert counts["FLOAT16"] > 0.99 * sum(counts.values())
    # the GPU engine runs that file; here its binding code runs it on the CPU
    engine = OrtCudaEngine(
        prepared.entry_dir / "model.onnx", limits=prepared.target.limits, device="cpu"
    )
    loading.warm_up(engine, 0)
    assert engine.output_name is OutputName.LAST_HIDDEN_STATE
