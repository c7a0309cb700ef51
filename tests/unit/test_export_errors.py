"""Bad checkpoints fail with an error that names the problem."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from tei_ort.errors import ModelError, UnsupportedModelError, WeightMappingError
from tei_ort.exporters.export import Variant, export_onnx
from tei_ort.exporters.weights import WeightStore, normalise_name
from tei_ort.model.hub import ResolvedModel
from tei_ort.model.info import Head
from tei_ort.model.inspect import inspect_model
from tests.support.graphs import checkpoint_files
from tests.support.tiny_models import make_model


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bert")
    make_model("bert", "base", path)
    return path


def _copy_with(src: Path, dst: Path, tensors: dict[str, np.ndarray]) -> Path:
    dst.mkdir()
    (dst / "config.json").write_text((src / "config.json").read_text())
    save_file(tensors, str(dst / "model.safetensors"))
    return dst


def _export(model_dir: Path, head: Head = Head.BASE) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    export_onnx(config, checkpoint_files(model_dir), head, Variant.ORT)


def test_missing_tensor_is_named(bert_dir: Path, tmp_path: Path) -> None:
    tensors = load_file(str(bert_dir / "model.safetensors"))
    del tensors["encoder.layer.1.output.dense.weight"]
    with pytest.raises(WeightMappingError, match=r"encoder\.layer\.1\.output\.dense\.weight"):
        _export(_copy_with(bert_dir, tmp_path / "m", tensors))


def test_wrong_shape_is_named(bert_dir: Path, tmp_path: Path) -> None:
    tensors = load_file(str(bert_dir / "model.safetensors"))
    tensors["encoder.layer.0.intermediate.dense.bias"] = np.zeros(7, np.float32)
    with pytest.raises(WeightMappingError, match=r"intermediate\.dense\.bias.*\(7,\)"):
        _export(_copy_with(bert_dir, tmp_path / "m", tensors))


def test_unknown_tensor_is_named(bert_dir: Path, tmp_path: Path) -> None:
    tensors = load_file(str(bert_dir / "model.safetensors"))
    tensors["encoder.layer.0.adapter.weight"] = np.zeros(3, np.float32)
    with pytest.raises(WeightMappingError, match=r"encoder\.layer\.0\.adapter\.weight"):
        _export(_copy_with(bert_dir, tmp_path / "m", tensors))


def test_classifier_without_head_weights(bert_dir: Path) -> None:
    with pytest.raises(WeightMappingError, match=r"classifier\.weight"):
        _export(bert_dir, Head.CLASSIFIER)


def test_unknown_architecture(bert_dir: Path, tmp_path: Path) -> None:
    tensors = load_file(str(bert_dir / "model.safetensors"))
    model_dir = _copy_with(bert_dir, tmp_path / "m", tensors)
    config = json.loads((model_dir / "config.json").read_text()) | {"model_type": "t5"}
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedModelError, match="'t5' is not supported"):
        _export(model_dir)


def test_relative_positions_refused(bert_dir: Path, tmp_path: Path) -> None:
    tensors = load_file(str(bert_dir / "model.safetensors"))
    model_dir = _copy_with(bert_dir, tmp_path / "m", tensors)
    config = json.loads((model_dir / "config.json").read_text())
    config["position_embedding_type"] = "relative_key"
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedModelError, match="relative_key"):
        _export(model_dir)


def test_no_safetensors(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelError, match="safetensors"):
        inspect_model(ResolvedModel(str(tmp_path), tmp_path, None))


def test_old_layernorm_names_and_prefix() -> None:
    assert normalise_name("bert.encoder.LayerNorm.gamma", ["bert."]) == "encoder.LayerNorm.weight"
    assert normalise_name("bert.encoder.LayerNorm.beta", ["bert."]) == "encoder.LayerNorm.bias"
    assert normalise_name("cls.predictions.bias", ["bert."]) == "cls.predictions.bias"


def test_a_tensor_cannot_be_taken_twice(bert_dir: Path) -> None:
    store = WeightStore(checkpoint_files(bert_dir))
    store.take("embeddings.LayerNorm.bias", (32,))
    with pytest.raises(WeightMappingError, match="used twice"):
        store.take("embeddings.LayerNorm.bias", (32,))
