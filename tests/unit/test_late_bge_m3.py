"""BGE-M3's three heads from one engine pass, against FlagEmbedding's formulas in torch, and
the restricted reader of its torch pickles (a malicious pickle is refused, never run)."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import tei_ort
from tei_ort.errors import ModelError, ModelTypeError, ValidationError
from tei_ort.exporters.torch_pickle import UnsafePickleError, load_state_dict
from tei_ort.model.info import Pooling
from tei_ort.model.late_config import LateFormat
from tests.support.tiny_bge_m3 import TEXTS, flag_reference, make_bge_m3
from tests.support.tiny_models import make_served_model


def test_three_heads_match_flag_embedding(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    encoder, colbert, sparse = make_bge_m3(tmp_path)
    expected = flag_reference(tmp_path, encoder, colbert, sparse, TEXTS)
    model = tei_ort.load(str(tmp_path), engine_cache=str(tmp_path / "engines"))
    assert model.info.late_interaction is not None
    assert model.info.late_interaction.format is LateFormat.BGE_M3

    dense = model.embed(TEXTS)
    lexical = model.embed_sparse(TEXTS)
    multi = model.embed_all(TEXTS)
    hybrid = model.embed_hybrid(TEXTS)
    for i, ref in enumerate(expected):
        np.testing.assert_allclose(dense[i], ref["dense"], atol=1e-5)
        ref_sparse = ref["sparse"]
        assert isinstance(ref_sparse, dict)
        assert sorted(lexical[i].indices.tolist()) == sorted(ref_sparse)
        got = dict(zip(lexical[i].indices.tolist(), lexical[i].values.tolist(), strict=True))
        np.testing.assert_allclose(
            [got[k] for k in sorted(got)], [ref_sparse[k] for k in sorted(got)], atol=1e-5
        )
        ref_colbert = ref["colbert"]
        assert isinstance(ref_colbert, np.ndarray)
        assert multi[i].shape == ref_colbert.shape  # tokens after CLS, </s> included
        np.testing.assert_allclose(multi[i], ref_colbert, atol=1e-5)
        # the one-pass request answers the same three outputs
        np.testing.assert_allclose(hybrid[i].dense, dense[i], atol=1e-6)
        np.testing.assert_allclose(hybrid[i].multi, multi[i], atol=1e-6)
        np.testing.assert_allclose(hybrid[i].sparse[lexical[i].indices], lexical[i].values)
        assert np.count_nonzero(hybrid[i].sparse) == lexical[i].indices.size
    # the [CLS] id never gets a lexical weight, though its token state has one
    cls_id = model.loaded.tokenizer.special_id("cls_token")
    assert cls_id is not None and all(cls_id not in v.indices for v in lexical)


def test_hybrid_needs_bge_m3(tmp_path: Path) -> None:
    make_served_model("bert", "base", tmp_path)
    model = tei_ort.load(
        str(tmp_path), engine_cache=str(tmp_path / "engines"), pooling=Pooling.MEAN
    )
    with pytest.raises(ValidationError):
        model.embed_hybrid(["x"])
    with pytest.raises(ModelTypeError):
        model.embed_sparse(["x"])


# --- the restricted torch reader ------------------------------------------------------------


def test_reads_a_torch_state_dict_without_torch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    state = {
        "weight": torch.randn(4, 3),
        "bias": torch.randn(4),
        "half": torch.randn(2, 5).half(),
        "bf16": torch.randn(3).bfloat16(),
        "strided": torch.randn(6, 4).t(),  # a non-contiguous view of a bigger storage
        "ids": torch.arange(5),
    }
    torch.save(state, tmp_path / "heads.pt")
    loaded = load_state_dict(tmp_path / "heads.pt")
    assert set(loaded) == set(state)
    for name, tensor in state.items():
        np.testing.assert_array_equal(
            loaded[name], tensor.float().numpy().astype(loaded[name].dtype)
        )
    assert loaded["bf16"].dtype == np.float32


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _replace_pickle(path: Path, payload: bytes) -> None:
    """Swap the data.pkl of a real torch.save archive for ``payload``."""
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, payload if name.endswith("/data.pkl") else data)
    path.write_bytes(buffer.getvalue())


def test_a_malicious_pickle_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"weight": torch.ones(2)}, tmp_path / "evil.pt")
    _replace_pickle(tmp_path / "evil.pt", pickle.dumps({"weight": _Evil(marker)}))
    with pytest.raises(UnsafePickleError, match=r"global (posix|os)\.system"):
        load_state_dict(tmp_path / "evil.pt")
    assert not marker.exists()
    # the same file as a BGE-M3 head: the model is refused at load, nothing runs
    make_bge_m3(tmp_path / "model")
    (tmp_path / "model" / "sparse_linear.pt").write_bytes((tmp_path / "evil.pt").read_bytes())
    with pytest.raises(UnsafePickleError):
        tei_ort.load(str(tmp_path / "model"), engine_cache=str(tmp_path / "engines"))
    assert not marker.exists()


def test_a_pickled_module_is_refused(tmp_path: Path) -> None:
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")  # a whole module, not tensors
    with pytest.raises(UnsafePickleError, match=r"torch\.nn\.modules\.linear"):
        load_state_dict(tmp_path / "module.pt")


def test_not_a_torch_zip(tmp_path: Path) -> None:
    (tmp_path / "legacy.pt").write_bytes(pickle.dumps({"weight": [1.0]}))
    with pytest.raises(ModelError, match="not a torch zip archive"):
        load_state_dict(tmp_path / "legacy.pt")
