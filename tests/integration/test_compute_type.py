"""x-compute-type and /info's model_dtype say what the engine declares, not a default."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tei_ort.http.app import create_app
from tests.support.app import FakeModel, serve, settings

pytestmark = pytest.mark.anyio


async def test_headers_and_info_follow_the_engine(make_model: Callable[..., FakeModel]) -> None:
    model = make_model()
    engine: Any = model.engine
    engine.compute_type = "cuda"  # as the CUDA engine declares it
    engine.dtype = "float16"
    async with serve(create_app(settings(), model)) as client:
        response = await client.post("/embed", json={"inputs": "hello"})
        assert response.status_code == 200
        assert response.headers["x-compute-type"] == "cuda"
        assert (await client.get("/info")).json()["model_dtype"] == "float16"
