"""The Gemma3 exporter (EmbeddingGemma) against transformers' Gemma3TextModel.

The reference runs each row alone, unpadded; our right-padded batch must give the same
hidden states on every real token, under bidirectional and causal attention.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tei_ort.errors import UnsupportedModelError
from tei_ort.exporters.export import Variant, export_onnx
from tei_ort.exporters.fp16 import to_float16
from tei_ort.model.info import Head, Pooling
from tei_ort.serving.pooling import pool
from tests.support.graphs import checkpoint_files
from tests.support.parity import assert_close, ort_session, parity, real_tokens
from tests.support.tiny_decoders import decoder_batch
from tests.support.tiny_gemma3 import make_gemma3


def _reference(model: Any, batch: dict[str, np.ndarray]) -> list[np.ndarray]:
    torch.set_num_threads(1)
    outs = []
    with torch.no_grad():
        for row, n in enumerate(batch["attention_mask"].sum(axis=1)):
            ids = torch.from_numpy(batch["input_ids"][row : row + 1, : int(n)])
            outs.append(model(input_ids=ids).last_hidden_state[0].numpy())
    return outs


def _graph(model_dir: Path, variant: Variant, head: Head = Head.BASE, **overrides: Any) -> Any:
    config = json.loads((model_dir / "config.json").read_text()) | overrides
    return export_onnx(config, checkpoint_files(model_dir), head, variant)


def _check(model_dir: Path, model: Any, variant: Variant) -> None:
    batch = decoder_batch()
    ours = ort_session(_graph(model_dir, variant)).run(None, batch)[0]
    refs = _reference(model, batch)
    assert_close(real_tokens(ours, batch), np.concatenate(refs))
    pooled = pool(ours, batch["attention_mask"], Pooling.MEAN)
    assert_close(pooled, np.stack([r.mean(0) for r in refs]))


@pytest.mark.parametrize("variant", list(Variant))
def test_bidirectional_parity(tmp_path: Path, variant: Variant) -> None:
    _check(tmp_path, make_gemma3(tmp_path), variant)


@pytest.mark.parametrize("variant", list(Variant))
def test_causal_parity(tmp_path: Path, variant: Variant) -> None:
    _check(tmp_path, make_gemma3(tmp_path, use_bidirectional_attention=False), variant)


def test_causal_for_causal_lm_checkpoint(tmp_path: Path) -> None:
    """A Gemma3ForCausalLM checkpoint ("model." prefix, lm_head) serves as an embedder."""
    import transformers

    from tests.support.tiny_gemma3 import gemma3_config_kwargs

    torch.manual_seed(0)
    config = transformers.Gemma3TextConfig(**gemma3_config_kwargs(tie_word_embeddings=False))
    config._attn_implementation = "eager"
    transformers.Gemma3ForCausalLM(config).eval().save_pretrained(tmp_path)
    names = json.loads((tmp_path / "config.json").read_text())
    assert names["architectures"] == ["Gemma3ForCausalLM"]
    lm = transformers.Gemma3ForCausalLM.from_pretrained(tmp_path, attn_implementation="eager")
    _check(tmp_path, lm.model.eval(), Variant.ORT)


def test_transformers_4_config(tmp_path: Path) -> None:
    """EmbeddingGemma as transformers 4 saved it: rope_theta, rope_local_base_freq,
    _sliding_window_pattern, no layer_types / rope_parameters."""
    model = make_gemma3(
        tmp_path,
        layer_types=None,
        sliding_window_pattern=3,
        rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": 1000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10.0},
        },
    )
    assert model.config.layer_types == [
        "sliding_attention",
        "sliding_attention",
        "full_attention",
        "sliding_attention",
    ]
    config = json.loads((tmp_path / "config.json").read_text())
    for key in ("rope_parameters", "layer_types"):
        del config[key]
    config |= {
        "rope_theta": 1000.0,
        "rope_local_base_freq": 10.0,
        "rope_scaling": None,
        "_sliding_window_pattern": 3,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    _check(tmp_path, model, Variant.ORT)


@pytest.mark.parametrize(
    "overrides",
    [
        {"use_bidirectional_attention": False},
        {"sliding_window": 2},
        {"query_pre_attn_scalar": 32},
        {
            "rope_parameters": {
                "full_attention": {"rope_type": "default", "rope_theta": 1000.0},
                "sliding_attention": {"rope_type": "default", "rope_theta": 1000.0},
            }
        },
    ],
)
def test_each_switch_matters(tmp_path: Path, overrides: dict[str, Any]) -> None:
    model = make_gemma3(tmp_path)
    batch = decoder_batch()
    ours = ort_session(_graph(tmp_path, Variant.PLAIN, **overrides)).run(None, batch)[0]
    max_abs, _ = parity(real_tokens(ours, batch), np.concatenate(_reference(model, batch)))
    assert max_abs > 1e-3


def test_fp16_graph_close_to_fp32(tmp_path: Path) -> None:
    make_gemma3(tmp_path)
    batch = decoder_batch()
    fp32 = ort_session(_graph(tmp_path, Variant.ORT)).run(None, batch)[0]
    fp16 = ort_session(to_float16(_graph(tmp_path, Variant.ORT))).run(None, batch)[0]
    mask = batch["attention_mask"]
    _, min_cos = parity(
        pool(fp16.astype(np.float32), mask, Pooling.MEAN), pool(fp32, mask, Pooling.MEAN)
    )
    assert min_cos >= 0.999


def test_only_embeddings(tmp_path: Path) -> None:
    make_gemma3(tmp_path)
    with pytest.raises(UnsupportedModelError, match="classifier head is not available for gemma3"):
        _graph(tmp_path, Variant.ORT, Head.CLASSIFIER)
    with pytest.raises(UnsupportedModelError, match="softcapping"):
        _graph(tmp_path, Variant.ORT, attn_logit_softcapping=50.0)


def test_flat_rope_parameters_refused(tmp_path: Path) -> None:
    make_gemma3(tmp_path)
    flat = {"rope_type": "default", "rope_theta": 10000.0}
    with pytest.raises(UnsupportedModelError, match="full_attention / sliding_attention"):
        _graph(tmp_path, Variant.ORT, rope_parameters=flat)
