"""tei-ort's own OpenAPI document (served at /api-doc/openapi.json; /docs shows it).

It describes what the server does (TEI's code behaviour), not TEI's published document.
"""

from __future__ import annotations

from typing import Any

from tei_ort.errors import (
    BackendError,
    BodyError,
    EmptyError,
    JsonSyntaxError,
    OverloadedError,
    PayloadTooLargeError,
    TokenizerError,
    UnhealthyError,
    ValidationError,
)
from tei_ort.http.openapi_responses import RESPONSE_SCHEMAS
from tei_ort.http.openapi_schemas import Limits, ref, request_schemas
from tei_ort.version import TEI_VERSION

TITLE = "tei-ort (Text Embeddings Inference API)"


def _errors(openai: bool = False, cohere: bool = False) -> dict[str, Any]:
    """Every error status a POST route answers (from the error classes, so the document
    follows them), with its body."""
    schema = ref(
        "CohereErrorResponse"
        if cohere
        else "OpenAICompatErrorResponse"
        if openai
        else "ErrorResponse"
    )
    content = {"application/json": {"schema": schema}}
    described: dict[int, list[str]] = {}
    for error, what in (
        (EmptyError, "empty input"),
        (JsonSyntaxError, "malformed JSON"),
        (ValidationError, "validation error (too many inputs, too long, bad dimensions)"),
        (BodyError, "body not of the route's shape"),
        (TokenizerError, "tokenization error"),
        (BackendError, "inference failed or wrong model kind"),
        (OverloadedError, "model is overloaded"),
        (UnhealthyError, "the server is shutting down"),
    ):
        described.setdefault(error.status_code, []).append(what)
    responses: dict[str, Any] = {
        str(status): {"description": "; ".join(whats).capitalize(), "content": content}
        for status, whats in sorted(described.items())
    }
    plain = {"text/plain": {"schema": {"type": "string"}}}
    # answered by the framework as TEI's axum answers them: plain text, or no body
    responses["401"] = {"description": "Missing or wrong API key (no body)"}
    responses[str(PayloadTooLargeError.status_code)] = {
        "description": "Body over the payload limit",
        "content": plain,
    }
    responses["415"] = {
        "description": "The body is not declared JSON (`Content-Type`)",
        "content": plain,
    }
    return dict(sorted(responses.items()))


def _post(
    summary: str, request: str, response: str, *, openai: bool = False, cohere: bool = False
) -> dict[str, Any]:
    return {
        "post": {
            "tags": ["Text Embeddings Inference"],
            "summary": summary,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ref(request)}},
            },
            "responses": {
                "200": {
                    "description": summary,
                    "content": {"application/json": {"schema": ref(response)}},
                },
                **_errors(openai, cohere),
            },
        }
    }


def _get(summary: str, responses: dict[str, Any]) -> dict[str, Any]:
    return {
        "get": {"tags": ["Text Embeddings Inference"], "summary": summary, "responses": responses}
    }


def _models_paths(paths: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """A several-model server's own paths: OpenAI's model list, and every route of one
    model under ``/models/{name}``. Requests and limits shown are the first model's."""
    name = {
        "name": "name",
        "in": "path",
        "required": True,
        "description": "A served model",
        "schema": {"type": "string", "enum": list(names)},
    }
    model = {
        "type": "object",
        "required": ["id", "object", "created", "owned_by"],
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string", "enum": ["model"]},
            "created": {"type": "integer"},
            "owned_by": {"type": "string"},
        },
    }
    listing = {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"type": "string", "enum": ["list"]},
            "data": {"type": "array", "items": model},
        },
    }
    not_served = {
        "description": "No model of that name is served",
        "content": {"application/json": {"schema": ref("OpenAICompatErrorResponse")}},
    }
    extra: dict[str, Any] = {
        "/v1/models": _get(
            "The served models (OpenAI)",
            {
                "200": {
                    "description": "Models",
                    "content": {"application/json": {"schema": listing}},
                }
            },
        ),
        "/v1/models/{name}": _get(
            "One served model (OpenAI)",
            {
                "200": {"description": "Model", "content": {"application/json": {"schema": model}}},
                "404": not_served,
            },
        ),
    }
    # every route of the document is also each model's (model_routes.POST_ROUTES and
    # MODEL_GET_ROUTES)
    for path, item in paths.items():
        operations = {
            method: {
                **operation,
                "summary": f"{operation['summary']}, by one model",
                "parameters": [name],
            }
            for method, operation in item.items()
        }
        extra["/models/{name}" + ("" if path == "/" else path)] = operations
    return extra


def openapi_document(limits: Limits | None = None) -> dict[str, Any]:
    """The document for a server under ``limits`` (the served model's and the flags')."""
    limits = limits or Limits()
    default_request, default_response = {
        "predict": ("PredictRequest", "PredictResponse"),
        "rerank": ("AnyRerankRequest", "AnyRerankResponse"),
        "similarity": ("SimilarityRequest", "SimilarityResponse"),
        "embed_sparse": ("EmbedSparseRequest", "EmbedSparseResponse"),
    }.get(limits.default_mode, ("EmbedRequest", "EmbedResponse"))
    health = {
        "200": {"description": "Everything is working fine"},
        "503": {
            "description": "The engine cannot run",
            "content": {"application/json": {"schema": ref("ErrorResponse")}},
        },
    }
    paths: dict[str, Any] = {
        "/health": _get("Health check", health),
        "/ping": _get("Health check (SageMaker)", health),
        "/info": _get(
            "Served model info",
            {
                "200": {
                    "description": "Info",
                    "content": {"application/json": {"schema": ref("Info")}},
                }
            },
        ),
        "/metrics": _get(
            "Prometheus metrics",
            {"200": {"description": "Prometheus text format", "content": {"text/plain": {}}}},
        ),
        "/embed": _post("Get embeddings", "EmbedRequest", "EmbedResponse"),
        "/embed_all": _post("Get all token embeddings", "EmbedAllRequest", "EmbedAllResponse"),
        "/embed_sparse": _post(
            "Get sparse embeddings (SPLADE, BGE-M3)", "EmbedSparseRequest", "EmbedSparseResponse"
        ),
        "/predict": _post("Get predictions (classifiers)", "PredictRequest", "PredictResponse"),
        "/rerank": _post("Get ranks (re-rankers)", "AnyRerankRequest", "AnyRerankResponse"),
        "/v1/rerank": _post(
            "Cohere / Jina re-rank", "DocumentsRerankRequest", "DocumentsRerankResponse"
        ),
        "/v2/rerank": _post(
            "Cohere v2 re-rank", "DocumentsRerankRequest", "DocumentsRerankResponse"
        ),
        "/similarity": _post("Sentence similarity", "SimilarityRequest", "SimilarityResponse"),
        "/tokenize": _post("Tokenize inputs", "TokenizeRequest", "TokenizeResponse"),
        "/decode": _post("Decode token ids", "DecodeRequest", "DecodeResponse"),
        "/v1/embeddings": _post(
            "OpenAI compatible embeddings",
            "OpenAICompatRequest",
            "OpenAICompatResponse",
            openai=True,
        ),
        "/embeddings": _post(
            "OpenAI compatible embeddings",
            "OpenAICompatRequest",
            "OpenAICompatResponse",
            openai=True,
        ),
        "/v2/embed": _post(
            "Cohere v2 embed (typed embeddings)",
            "CohereEmbedRequest",
            "CohereEmbedResponse",
            cohere=True,
        ),
        "/v1/embed": _post(
            "Cohere v1 embed", "CohereEmbedV1Request", "CohereEmbedResponse", cohere=True
        ),
        "/vertex": _post("Vertex AI compatible route", "VertexRequest", "VertexResponse"),
        "/invocations": _post(
            "SageMaker route: the model kind's own route", default_request, default_response
        ),
    }
    paths["/"] = {
        **_get("Health check", health),
        **_post("The model kind's own route", default_request, default_response),
    }
    if limits.served_models:
        paths.update(_models_paths(paths, limits.served_models))
    return {
        "openapi": "3.0.3",
        "info": {
            "title": TITLE,
            "description": "A drop-in replacement for Hugging Face Text Embeddings Inference "
            "on ONNX Runtime.",
            "license": {"name": "Apache 2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0"},
            "version": TEI_VERSION,
        },
        "tags": [{"name": "Text Embeddings Inference"}],
        "paths": paths,
        "components": {
            "schemas": {**request_schemas(limits), **RESPONSE_SCHEMAS},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
