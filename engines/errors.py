"""The engines layer's errors (``tei_ort.errors`` maps them for the server).

::

    EngineError                  an engine cannot be built, loaded, started or run
    ├── UnknownProviderError     an execution provider name that is not one we know
    ├── EngineUnavailableError   the dtype asked for has no engine on this machine
    └── ProviderStartError       the provider is installed but cannot start here (no
                                 driver, a missing CUDA library, no GPU)
"""

from __future__ import annotations


class EngineError(Exception):
    """An engine cannot be built, loaded, started or run."""


class UnknownProviderError(EngineError, ValueError):
    """An execution provider name that is not one of ``tei_ort.engines.providers.PROVIDERS``."""


class EngineUnavailableError(EngineError):
    """The dtype asked for has no engine on this machine (the CPU or a package lacks it)."""


class ProviderStartError(EngineError):
    """An installed provider cannot start on this machine: its libraries or its device fail."""
