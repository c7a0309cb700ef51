"""GPU engines end to end: ONNX Runtime CUDA (IOBinding, float16, CUDA graphs) and TensorRT.

Run on a machine with an NVIDIA GPU (compute capability >= 7.5) and the `gpu` extra (the
`tensorrt` extra for the TensorRT tests): ``pytest -m gpu tests/gpu``. Everything here
skips with its reason elsewhere. Bounds: float16 against the float32 CPU engine, cosine
>= 0.999 per vector (float16 carries about three significant digits; issue #29 sets it).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import tei_ort
from tei_ort.api import Model
from tei_ort.engines.base import EngineInputs
from tei_ort.engines.providers import query_compute_capability
from tei_ort.errors import EngineError
from tei_ort.model.hub import default_model_path

MIN_COSINE = 0.999
MIN_COSINE_FP32 = 0.99999
TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog. " * 20,
    "tei-ort serves embeddings on ONNX Runtime and TensorRT",
    "ünïcödé text with emojis 🚀 and accents: café",
    "a",
] * 7
#: other words in the same shapes (lengths within one padding bucket of TEXTS): the
#: captured CUDA graphs replay with new inputs
REPLAY_TEXTS = [
    "Goodbye moon",
    "A slow grey cat sleeps under the warm red sun. " * 20,
    "tei-ort answers rerank calls on CUDA graphs and IOBinding",
    "àçcéñts änd ömlauts with a rocket 🚀 and tea: thé",
    "b",
] * 7


def _no_gpu_reason() -> str | None:
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "onnxruntime-gpu is not installed (no CUDAExecutionProvider)"
    capability = query_compute_capability(0)
    if capability is None:
        return "no NVIDIA GPU is visible"
    if capability < (7, 5):
        return f"the GPU's compute capability {capability} is below 7.5"
    return None


REASON = _no_gpu_reason()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(REASON is not None, reason=REASON or "")]
needs_tensorrt = pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is None, reason="tensorrt is not installed"
)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("engines")


@pytest.fixture(scope="module")
def references(cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """float32 on the CPU (the default CPU engine may be bf16 on the host): the vectors of
    TEXTS and of REPLAY_TEXTS."""
    model = tei_ort.load(str(default_model_path()), engine_cache=str(cache), dtype="float32")
    vectors = model.embed(TEXTS), model.embed(REPLAY_TEXTS)
    model.close()
    return vectors


@pytest.fixture(scope="module")
def reference(references: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return references[0]


def _load(cache: Path, **options: object) -> Iterator[Model]:
    model = tei_ort.load(str(default_model_path()), engine_cache=str(cache), **options)
    yield model
    model.close()


@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_ort_cuda_float16(
    cache: Path, references: tuple[np.ndarray, np.ndarray], cuda_graphs: bool
) -> None:
    reference, replay_reference = references
    for model in _load(cache, provider="cuda", cuda_graphs=cuda_graphs):
        assert model.loaded.entry_dir is not None
        assert "onnx-cuda-sm" in (model.loaded.entry_dir / "key.json").read_text()
        ours = model.embed(TEXTS)
        assert _cosines(ours, reference).min() >= MIN_COSINE
        replayed = model.embed(REPLAY_TEXTS)  # the captured graphs, with new inputs
        assert _cosines(replayed, replay_reference).min() >= MIN_COSINE
        assert _cosines(replayed, ours).min() < 0.99  # other texts: really new inputs


@pytest.mark.parametrize("provider", ["cuda", pytest.param("tensorrt", marks=needs_tensorrt)])
def test_float32_on_the_gpu_is_float32(cache: Path, reference: np.ndarray, provider: str) -> None:
    """TF32 is off: float32 on the GPU keeps float32's vectors (TF32 would drift ~1e-4)."""
    for model in _load(cache, provider=provider, dtype="float32"):
        assert _cosines(model.embed(TEXTS), reference).min() >= MIN_COSINE_FP32
        session = getattr(model.loaded.engine, "session", None)
        if session is not None:  # no silent CPU session behind a CUDA engine
            assert session.get_providers()[0] == "CUDAExecutionProvider"


@needs_tensorrt
def test_tensorrt_float16_and_profiles(cache: Path, reference: np.ndarray) -> None:
    for model in _load(cache, provider="tensorrt"):
        ours = model.embed(TEXTS)
        assert _cosines(ours, reference).min() >= MIN_COSINE
        engine = model.loaded.engine
        assert engine.max_batch_size is not None
        too_many = engine.max_batch_size + 1
        ids = np.ones((too_many, 16), dtype=np.int64)
        with pytest.raises(EngineError, match="outside every TensorRT optimization profile"):
            engine.run(EngineInputs(ids, np.ones_like(ids), np.zeros_like(ids)))
    for model in _load(cache, provider="tensorrt"):  # a restart finds the cached engine
        assert not model.loaded.built
