"""An engine cache key for the cache tests (what it names is never built or loaded)."""

from __future__ import annotations

from tei_ort.model.cache import CacheKey

KEY = CacheKey(
    model_id="org/model",
    weights_digest="abc",
    exporter_version="1",
    target="onnx-cpu",
    dtype="float32",
    head="base",
    variant="ort",
    runtime="onnxruntime-1.0",
)
