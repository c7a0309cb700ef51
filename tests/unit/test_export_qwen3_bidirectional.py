"""Bidirectional Qwen3 embedders (pplx-embed, voyage-4-nano) and transformers-5 configs.

transformers' Qwen3Model has no bidirectional switch of its own; handed a dict of 4D masks
it uses them as given, so the reference runs each row alone under an all-zero mask: every
token sees every other, as the embedders' remote code (and TEI) attend.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from tei_ort.errors import UnsupportedModelError, WeightMappingError
from tei_ort.exporters.export import Variant, export_onnx
from tei_ort.model.info import Head, Pooling
from tei_ort.serving.pooling import pool
from tests.support.graphs import checkpoint_files
from tests.support.parity import assert_close, ort_session, real_tokens
from tests.support.tiny_decoders import decoder_batch, make_decoder

PROJECTED = 24


def _bidirectional(model: Any, batch: dict[str, np.ndarray]) -> list[np.ndarray]:
    """transformers' hidden states of each row alone, every token attending to all."""
    torch.set_num_threads(1)
    outs = []
    with torch.no_grad():
        for row, n in enumerate(batch["attention_mask"].sum(axis=1)):
            ids = torch.from_numpy(batch["input_ids"][row : row + 1, : int(n)])
            mask = {"full_attention": torch.zeros(1, 1, int(n), int(n))}
            outs.append(model(input_ids=ids, attention_mask=mask).last_hidden_state[0].numpy())
    return outs


def _export(model_dir: Path, variant: Variant, **overrides: Any) -> Any:
    config = json.loads((model_dir / "config.json").read_text()) | overrides
    return ort_session(export_onnx(config, checkpoint_files(model_dir), Head.BASE, variant))


def _make(model_dir: Path) -> Any:
    # as transformers 5 writes them: rope_parameters, layer_types, pad_token_id null
    return make_decoder(
        "qwen3", "base", model_dir, use_bidirectional_attention=True, pad_token_id=None
    )


@pytest.mark.parametrize("variant", list(Variant))
def test_bidirectional_parity(tmp_path: Path, variant: Variant) -> None:
    model = _make(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["pad_token_id"] is None and "rope_parameters" in config
    batch = decoder_batch()
    ours = _export(tmp_path, variant).run(None, batch)[0]
    refs = _bidirectional(model, batch)
    assert_close(real_tokens(ours, batch), np.concatenate(refs))
    assert_close(
        pool(ours, batch["attention_mask"], Pooling.MEAN), np.stack([r.mean(0) for r in refs])
    )


def test_bidirectional_switch_matters(tmp_path: Path) -> None:
    """The same weights read causally give other vectors: the switch is honoured."""
    model = _make(tmp_path)
    batch = decoder_batch()
    causal = _export(tmp_path, Variant.PLAIN, use_bidirectional_attention=False).run(None, batch)[0]
    ref = np.concatenate(_bidirectional(model, batch))
    assert np.abs(real_tokens(causal, batch) - ref).max() > 1e-2


@pytest.mark.parametrize("variant", list(Variant))
def test_projection_layer(tmp_path: Path, variant: Variant) -> None:
    model = _make(tmp_path)
    weights = load_file(str(tmp_path / "model.safetensors"))
    rng = np.random.default_rng(3)
    projection = (0.2 * rng.standard_normal((PROJECTED, 64))).astype(np.float32)
    save_file(weights | {"linear.weight": projection}, str(tmp_path / "model.safetensors"))
    batch = decoder_batch()
    ours = _export(tmp_path, variant).run(None, batch)[0]
    assert ours.shape[-1] == PROJECTED
    refs = [r @ projection.T for r in _bidirectional(model, batch)]
    assert_close(real_tokens(ours, batch), np.concatenate(refs))
    # a projection of the wrong width is refused, not broadcast
    save_file(weights | {"linear.weight": projection[:, :32]}, str(tmp_path / "model.safetensors"))
    with pytest.raises(WeightMappingError, match=r"linear\.weight"):
        _export(tmp_path, variant)


def test_transformers_4_config_gives_the_same_graph_output(tmp_path: Path) -> None:
    """rope_theta / no layer_types (transformers 4) and rope_parameters / layer_types
    (transformers 5) describe the same model."""
    model = _make(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    legacy = {k: v for k, v in config.items() if k not in ("rope_parameters", "layer_types")}
    legacy |= {"rope_theta": config["rope_parameters"]["rope_theta"], "rope_scaling": None}
    (tmp_path / "config.json").write_text(json.dumps(legacy))
    batch = decoder_batch()
    ours = _export(tmp_path, Variant.ORT).run(None, batch)[0]
    assert_close(real_tokens(ours, batch), np.concatenate(_bidirectional(model, batch)))


def test_bidirectional_other_families_refused(tmp_path: Path) -> None:
    make_decoder("llama", "base", tmp_path)
    with pytest.raises(UnsupportedModelError, match="use_bidirectional_attention"):
        _export(tmp_path, Variant.ORT, use_bidirectional_attention=True)
