"""The exporters layer's errors (``tei_ort.errors`` maps them for the server).

::

    ModelError                   a model's files cannot be read or exported
    ├── UnsupportedModelError    an architecture, head or option we cannot build exactly
    └── WeightMappingError       a tensor missing, unknown, unused or of the wrong shape
"""

from __future__ import annotations


class ModelError(Exception):
    """A model's files cannot be read or exported."""


class UnsupportedModelError(ModelError):
    """An architecture, head, pooling or option that tei-ort cannot serve exactly."""


class WeightMappingError(ModelError):
    """A checkpoint tensor is missing, unknown, unused or has the wrong shape."""
