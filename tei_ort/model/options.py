"""The model flags of ``serve`` and ``build`` (and the in-process API's options)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tei_ort.model.info import Pooling

if TYPE_CHECKING:
    from tei_ort.settings import Settings


@dataclass(frozen=True)
class ModelOptions:
    """What decides which engine a model gets (the model flags of serve and build)."""

    model_id: str | None = None
    revision: str | None = None
    hf_token: str | None = None
    huggingface_hub_cache: str | None = None
    pooling: Pooling | None = None
    dense_path: str | None = None
    dtype: str | None = None
    engine_cache: str | None = None
    threads: int | None = None
    provider: str | None = None  # execution provider (tei_ort.engines.providers); None: cpu
    device_id: int = 0
    cuda_graphs: bool = False
    # GPU engines size their buffers and TensorRT profiles from the batcher's limits
    max_batch_tokens: int = 16384
    max_batch_requests: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelOptions:
        return cls(
            model_id=settings.model_id,
            revision=settings.revision,
            hf_token=settings.hf_token,
            huggingface_hub_cache=settings.huggingface_hub_cache,
            pooling=settings.pooling,
            dense_path=settings.dense_path,
            dtype=settings.dtype,
            engine_cache=settings.engine_cache,
            provider=settings.execution_provider,
            device_id=settings.device_id,
            cuda_graphs=settings.cuda_graphs,
            max_batch_tokens=settings.max_batch_tokens,
            max_batch_requests=settings.max_batch_requests,
        )
