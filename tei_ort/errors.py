"""Every error tei-ort raises, and the one place they map to TEI's wire format.

The lower layers raise their own errors (``tei_ort.engines.errors``,
``exporters.errors``); this module re-exports them so the server names one module,
and :data:`START_ERRORS` is what a failed start-up can raise.

::

    TeiOrtError                      base of the server's own errors; never raised itself
    ├── ConfigurationError           bad flags or settings; start-up fails
    └── RequestError                 one request failed; HTTP status, gRPC code, ``error_type``
        ├── ValidationError          422 INVALID_ARGUMENT "Validation"
        │   ├── BatchSizeError       422 INVALID_ARGUMENT "Validation", counted as batch_size
        │   └── BodyError            422 "Validation": the body is not what the route takes
        │       └── JsonSyntaxError  400 "Validation": the body is not JSON
        ├── TokenizerError           422 FAILED_PRECONDITION "Tokenizer"
        ├── EmptyError               400 INVALID_ARGUMENT "Empty"
        ├── OverloadedError          429 RESOURCE_EXHAUSTED "Overloaded"
        ├── BackendError             424 FAILED_PRECONDITION "Backend"
        │   └── ModelTypeError       424 "Backend", counted as model_type
        ├── UnhealthyError           503 UNAVAILABLE "Unhealthy"
        └── PayloadTooLargeError     413, HTTP only: TEI's framework answers it in plain text

    ModelError (exporters)           the model cannot be resolved, read or exported
    ├── ModelNotFoundError           not on disk, not in the hub cache while offline
    ├── UnsupportedModelError        architecture / head we cannot serve (exporters)
    └── WeightMappingError           a tensor missing, unknown, unused or of the wrong shape
    EngineError (engines)            an engine cannot be built, loaded or run
    ├── UnknownProviderError         an execution provider we do not know
    └── EngineUnavailableError       the dtype asked for has no engine on this machine

The two front ends' mappings live on the classes, side by side: ``status_code`` for HTTP
(``tei_ort.http.responses``), ``grpc_code`` (a ``grpc.StatusCode`` name, as TEI's gRPC
server maps its error types) for gRPC (``tei_ort.grpc.server``).

``RequestError.metric_label`` is the ``err`` label of ``te_request_failure``.
"""

from __future__ import annotations

from typing import ClassVar

from tei_ort.engines.errors import EngineError, EngineUnavailableError, UnknownProviderError
from tei_ort.exporters.errors import ModelError, UnsupportedModelError, WeightMappingError

__all__ = [
    "START_ERRORS",
    "BackendError",
    "BatchSizeError",
    "BodyError",
    "ConfigurationError",
    "EmptyError",
    "EngineCacheError",
    "EngineError",
    "EngineUnavailableError",
    "JsonSyntaxError",
    "ModelError",
    "ModelNotFoundError",
    "ModelTypeError",
    "OverloadedError",
    "PayloadTooLargeError",
    "RequestError",
    "TeiOrtError",
    "TokenizerError",
    "UnhealthyError",
    "UnknownProviderError",
    "UnsupportedModelError",
    "ValidationError",
    "WeightMappingError",
]


class TeiOrtError(Exception):
    """Base of every tei-ort error."""


class ConfigurationError(TeiOrtError):
    """Flags or settings that cannot work together."""


class EngineCacheError(TeiOrtError):
    """An engine cache entry that cannot be used (damaged, unfinished) nor rebuilt."""


class ModelNotFoundError(ModelError):
    """The model is neither a local directory nor reachable on the hub (or in its cache)."""


class RequestError(TeiOrtError):
    """A failure of one request, answered to its client as TEI answers it."""

    status_code: ClassVar[int] = 500
    grpc_code: ClassVar[str] = "FAILED_PRECONDITION"
    error_type: ClassVar[str] = "Backend"
    metric_label: ClassVar[str] = "inference"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, str]:
        return {"error": self.message, "error_type": self.error_type}


class ValidationError(RequestError):
    """The request is well formed but not acceptable (too many inputs, too long, ...).

    TEI 1.9 maps ``ErrorType::Validation`` to 422 Unprocessable Entity in its HTTP server
    (it was 413 before 1.9.0); a body over ``--payload-limit`` stays 413.
    """

    status_code = 422
    grpc_code = "INVALID_ARGUMENT"
    error_type = "Validation"
    metric_label = "validation"


class BodyError(ValidationError):
    """The body does not have the route's shape (wrong type, missing or unknown field).

    TEI's JSON extractor rejects such bodies with 422 before its handlers run.
    """

    status_code = 422


class JsonSyntaxError(BodyError):
    """The body is not valid JSON: 400, as TEI's JSON extractor answers a syntax error."""

    status_code = 400


class BatchSizeError(ValidationError):
    """More inputs than ``--max-client-batch-size``; TEI counts it apart."""

    metric_label = "batch_size"


class TokenizerError(RequestError):
    status_code = 422
    grpc_code = "FAILED_PRECONDITION"
    error_type = "Tokenizer"
    metric_label = "tokenization"


class EmptyError(RequestError):
    status_code = 400
    grpc_code = "INVALID_ARGUMENT"
    error_type = "Empty"
    metric_label = "validation"


class OverloadedError(RequestError):
    status_code = 429
    grpc_code = "RESOURCE_EXHAUSTED"
    error_type = "Overloaded"
    metric_label = "overloaded"


class BackendError(RequestError):
    status_code = 424
    grpc_code = "FAILED_PRECONDITION"
    error_type = "Backend"
    metric_label = "inference"


class ModelTypeError(BackendError):
    """The route does not fit the model kind (e.g. /rerank on an embedding model)."""

    metric_label = "model_type"


class UnhealthyError(RequestError):
    status_code = 503
    grpc_code = "UNAVAILABLE"
    error_type = "Unhealthy"
    metric_label = "inference"


class PayloadTooLargeError(RequestError):
    """A body over ``--payload-limit`` (``http.responses`` answers it as axum does)."""

    status_code = 413
    grpc_code = "INVALID_ARGUMENT"
    error_type = "PayloadTooLarge"
    metric_label = "validation"


#: what a failed start-up (resolve, inspect, build, load) raises: the CLI reports these
#: with their message and exits 1; anything else is a bug and keeps its traceback
START_ERRORS: tuple[type[Exception], ...] = (TeiOrtError, ModelError, EngineError)
