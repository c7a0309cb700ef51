"""NomicBert (v1 and v2 MoE), JinaBERT v2 and GTE "new" served end to end from their fixture
directories: inspect -> export -> engine cache -> ONNX Runtime -> pooling, in process and over HTTP,
against the golden pooled vectors of the original modeling code."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import tei_ort
from tei_ort.api import Model
from tei_ort.http.app import create_app
from tei_ort.model.info import Pooling
from tests.support.app import serve, settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
POOLING = {
    "nomic_bert_tiny": Pooling.MEAN,
    "jina_bert_v2_tiny": Pooling.MEAN,
    "gte_new_tiny": Pooling.CLS,
    "nomic_bert_moe_tiny": Pooling.MEAN,
}
ATOL = 1e-4
MIN_COSINE = 0.99999


@pytest.fixture(scope="module", params=list(POOLING))
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Model]]:
    name: str = request.param
    cache = tmp_path_factory.mktemp(f"engines-{name}")
    model = tei_ort.load(str(FIXTURES / name), engine_cache=str(cache), threads=1)
    yield name, model
    model.close()


def _texts(name: str) -> list[str]:
    texts: list[str] = json.loads((FIXTURES / name / "inputs.json").read_text())["texts"]
    return texts


def _expected(name: str) -> np.ndarray:
    pooled = np.load(FIXTURES / name / "pooled.npy").astype(np.float64)
    normalized: np.ndarray = pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)
    return normalized


def _assert_close(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= ATOL
    assert ((ours * ref).sum(-1) / np.linalg.norm(ours, axis=-1)).min() >= MIN_COSINE


def test_inspection_picks_the_fixture_pooling(served: tuple[str, Model]) -> None:
    name, model = served
    assert model.info.pooling is POOLING[name]
    assert model.dimensions == 64


def test_embed_matches_golden_pooled(served: tuple[str, Model]) -> None:
    name, model = served
    _assert_close(model.embed(_texts(name)).astype(np.float64), _expected(name))


@pytest.mark.anyio
async def test_http_embed_matches_golden_pooled(served: tuple[str, Model]) -> None:
    name, model = served
    async with serve(create_app(settings(), model.loaded)) as client:
        response = await client.post("/embed", json={"inputs": _texts(name)})
    assert response.status_code == 200
    _assert_close(np.asarray(response.json(), dtype=np.float64), _expected(name))
