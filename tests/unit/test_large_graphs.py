"""Graphs whose weights live in external data load, optimize, save and reload."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tei_ort.engines.base import EngineInputs
from tei_ort.engines.ort_engine import OrtEngine, save_optimized
from tei_ort.exporters.export import Variant, export_onnx, export_to_file
from tei_ort.model.info import Head
from tests.support.graphs import checkpoint_files
from tests.support.tiny_models import make_model, mixed_batch


def test_external_data_engine_saves_and_reloads_its_optimized_graph(tmp_path: Path) -> None:
    make_model("bert", "base", tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    files = checkpoint_files(tmp_path / "model")
    entry = tmp_path / "entry"
    entry.mkdir()
    graph = entry / "model.onnx"
    assert export_to_file(config, files, Head.BASE, graph, Variant.ORT, external_threshold=0)
    assert (entry / "model.onnx.data").is_file()

    batch = mixed_batch("bert")
    inputs = EngineInputs(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    optimized = entry / "model.opt.onnx"
    first = OrtEngine(graph, threads=1).run(inputs)
    save_optimized(graph, optimized)
    assert optimized.is_file() and (entry / "model.opt.onnx.data").is_file()
    again = OrtEngine(graph, threads=1, optimized_path=optimized).run(inputs)  # loads the saved one
    np.testing.assert_array_equal(first, again)

    in_memory = export_onnx(config, files, Head.BASE, Variant.ORT)
    reference = tmp_path / "reference.onnx"
    reference.write_bytes(in_memory.SerializeToString())
    expected = OrtEngine(reference, threads=1).run(inputs)
    valid = batch["attention_mask"].astype(bool)
    np.testing.assert_allclose(first[valid], expected[valid], atol=1e-5)


def test_in_memory_passes_refuse_graphs_over_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tei_ort.errors import UnsupportedModelError
    from tei_ort.model import build, loading
    from tei_ort.model.hub import default_model_path

    monkeypatch.setattr(build, "EXTERNAL_DATA_THRESHOLD", 0)
    options = loading.ModelOptions(
        model_id=str(default_model_path()), dtype="int8", engine_cache=str(tmp_path)
    )
    with pytest.raises(UnsupportedModelError, match="more than 1 GiB"):
        loading.prepare_engine(options)
