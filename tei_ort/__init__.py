"""tei-ort: a Text Embeddings Inference server on ONNX Runtime.

``tei_ort.load(model_id)`` gives the in-process API (see :mod:`tei_ort.api`); it is
imported on first use so that the CLI starts without loading ONNX Runtime.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# ONNX Runtime (1.32 on Linux) writes a device id and an event database under
# ~/.cache/Microsoft at import and carries a collector for Microsoft's telemetry service;
# `disable_telemetry_events()` does not stop the import-time part, this variable does. Set
# here, before any module of the package can import onnxruntime; a user's own value wins.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from tei_ort.version import VERSION as __version__

if TYPE_CHECKING:
    from tei_ort.api import Model, load

__all__ = ["Model", "__version__", "load"]


def __getattr__(name: str) -> Any:
    if name in ("load", "Model"):
        from tei_ort import api

        return getattr(api, name)
    raise AttributeError(f"module 'tei_ort' has no attribute {name!r}")
