"""The engines layer's errors (``tei_ort.errors`` maps them for the server).

::

    EngineError                  an engine cannot be built, loaded, started or run
    ├── UnknownProviderError     an execution provider name that is not one we know
    └── EngineUnavailableError   the dtype asked for has no engine on this machine
"""

from __future__ import annotations


class EngineError(Exception):
    """An engine cannot be built, loaded, started or run."""


class UnknownProviderError(EngineError, ValueError):
    """An execution provider name that is not one of ``tei_ort.engines.providers.PROVIDERS``."""


class EngineUnavailableError(EngineError):
    """The dtype asked for has no engine on this machine (the CPU or a package lacks it)."""
