"""The response schemas of the OpenAPI document (what each route answers), with their
required fields, so that the conformance pass of the tests checks every answer's shape."""

from __future__ import annotations

from typing import Any

from tei_ort.http.openapi_schemas import ref

_VECTOR = {"type": "array", "items": {"type": "number", "format": "float"}}
_INTS = {"type": "array", "items": {"type": "integer", "minimum": -128, "maximum": 255}}
_USAGE = {
    "type": "object",
    "required": ["prompt_tokens", "total_tokens"],
    "properties": {
        "prompt_tokens": {"type": "integer", "minimum": 0},
        "total_tokens": {"type": "integer", "minimum": 0},
    },
}


def _closed(properties: dict[str, Any], required: tuple[str, ...]) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": properties}


RESPONSE_SCHEMAS: dict[str, Any] = {
    "ErrorResponse": _closed(
        {"error": {"type": "string"}, "error_type": ref("ErrorType")}, ("error", "error_type")
    ),
    "ErrorType": {
        "type": "string",
        "enum": [
            "Unhealthy",
            "Backend",
            "Overloaded",
            "Validation",
            "Tokenizer",
            "Empty",
        ],
    },
    "OpenAICompatErrorResponse": _closed(
        {"message": {"type": "string"}, "code": {"type": "integer"}, "type": ref("ErrorType")},
        ("message", "code", "type"),
    ),
    "EmbedResponse": {
        "description": "One vector per input: floats, or integers for tei-ort's int8 / uint8 "
        "/ binary / ubinary `embedding_type`, or base64 strings for `encoding_format: base64`",
        "type": "array",
        "items": {
            "oneOf": [
                _VECTOR,
                {"type": "string", "format": "byte"},
                ref("HybridEmbedding"),
                ref("ChunkedEmbedding"),
            ]
        },
    },
    "CohereErrorResponse": _closed(
        {"id": {"type": "string"}, "message": {"type": "string"}}, ("id", "message")
    ),
    "CohereEmbedResponse": _closed(
        {
            "response_type": {
                "type": "string",
                "enum": ["embeddings_by_type", "embeddings_floats"],
            },
            "id": {"type": "string"},
            "embeddings": {
                "description": "v2 (and v1 with `embedding_types`): each type asked -> one "
                "vector (or base64 string) per text; v1 without: the float vectors",
                "oneOf": [
                    {"type": "array", "items": _VECTOR},
                    {
                        "type": "object",
                        "properties": {
                            "float": {"type": "array", "items": _VECTOR},
                            "int8": {"type": "array", "items": _INTS},
                            "uint8": {"type": "array", "items": _INTS},
                            "binary": {"type": "array", "items": _INTS},
                            "ubinary": {"type": "array", "items": _INTS},
                            "base64": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                ],
            },
            "texts": {"type": "array", "items": {"type": "string"}},
            "meta": _closed(
                {
                    "api_version": {"type": "object"},
                    "billed_units": _closed(
                        {"input_tokens": {"type": "integer", "minimum": 0}}, ("input_tokens",)
                    ),
                },
                ("api_version", "billed_units"),
            ),
        },
        ("response_type", "id", "embeddings", "texts", "meta"),
    ),
    # tei-ort: /embed `chunks` (late chunking)
    "ChunkedEmbedding": _closed(
        {
            "spans": {
                "type": "array",
                "items": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            },
            "embeddings": {"type": "array", "items": _VECTOR},
        },
        ("spans", "embeddings"),
    ),
    # tei-ort: /embed `outputs` (BGE-M3), any of the three
    "HybridEmbedding": {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {
            "dense": _VECTOR,
            "sparse": {"type": "array", "items": ref("SparseValue")},
            "multi_vector": {"type": "array", "items": _VECTOR},
        },
    },
    "EmbedAllResponse": {
        "type": "array",
        "items": {"oneOf": [{"type": "array", "items": _VECTOR}, ref("PackedVectors")]},
    },
    # tei-ort: /embed_all `"encoding_format": "base64"`
    "PackedVectors": _closed(
        {
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "dtype": {"type": "string", "enum": ["float32", "float16"]},
            "base64": {"type": "string"},
        },
        ("shape", "dtype", "base64"),
    ),
    "SparseValue": _closed(
        {"index": {"type": "integer", "minimum": 0}, "value": {"type": "number"}},
        ("index", "value"),
    ),
    "EmbedSparseResponse": {
        "type": "array",
        "items": {"type": "array", "items": ref("SparseValue")},
    },
    "Prediction": _closed(
        {"score": {"type": "number"}, "label": {"type": "string"}}, ("score", "label")
    ),
    "PredictResponse": {
        "oneOf": [
            {"type": "array", "items": ref("Prediction")},
            {"type": "array", "items": {"type": "array", "items": ref("Prediction")}},
        ]
    },
    "Rank": _closed(
        {
            "index": {"type": "integer", "minimum": 0},
            "text": {"type": "string"},
            "score": {"type": "number"},
        },
        ("index", "score"),
    ),
    "RerankResponse": {"type": "array", "items": ref("Rank")},
    "DocumentsRerankResponse": _closed(
        {
            "id": {"type": "string"},
            "model": {"type": "string"},
            "results": {
                "type": "array",
                "items": _closed(
                    {
                        "index": {"type": "integer", "minimum": 0},
                        "relevance_score": {"type": "number"},
                        "document": _closed({"text": {"type": "string"}}, ("text",)),
                    },
                    ("index", "relevance_score"),
                ),
            },
            "usage": _USAGE,
            "meta": {"type": "object"},
        },
        ("id", "results"),
    ),
    "AnyRerankResponse": {"oneOf": [ref("RerankResponse"), ref("DocumentsRerankResponse")]},
    "SimilarityResponse": {"type": "array", "items": {"type": "number"}},
    "SimpleToken": _closed(
        {
            "id": {"type": "integer", "minimum": 0},
            "text": {"type": "string"},
            "special": {"type": "boolean"},
            "start": {"type": "integer", "nullable": True, "description": "UTF-8 byte offset"},
            "stop": {"type": "integer", "nullable": True, "description": "UTF-8 byte offset"},
        },
        ("id", "text", "special", "start", "stop"),
    ),
    "TokenizeResponse": {"type": "array", "items": {"type": "array", "items": ref("SimpleToken")}},
    "DecodeResponse": {"type": "array", "items": {"type": "string"}},
    "OpenAICompatResponse": _closed(
        {
            "object": {"type": "string", "enum": ["list"]},
            "data": {
                "type": "array",
                "items": _closed(
                    {
                        "object": {"type": "string", "enum": ["embedding"]},
                        "embedding": {
                            "oneOf": [
                                _VECTOR,
                                {
                                    "type": "string",
                                    "description": "base64 of the little-endian bytes (f32, "
                                    "or tei-ort's `embedding_type`)",
                                },
                            ]
                        },
                        "index": {"type": "integer", "minimum": 0},
                    },
                    ("object", "embedding", "index"),
                ),
            },
            "model": {"type": "string"},
            "usage": _USAGE,
        },
        ("object", "data", "model", "usage"),
    ),
    "VertexResponse": _closed({"predictions": {"type": "array", "items": {}}}, ("predictions",)),
    "Info": _closed(
        {
            "model_id": {"type": "string"},
            "model_sha": {"type": "string", "nullable": True},
            "model_dtype": {"type": "string"},
            "served_model_name": {"type": "string"},
            "model_type": {"type": "object"},
            "max_concurrent_requests": {"type": "integer"},
            "max_input_length": {"type": "integer"},
            "max_batch_tokens": {"type": "integer"},
            "max_batch_requests": {"type": "integer", "nullable": True},
            "max_client_batch_size": {"type": "integer"},
            "auto_truncate": {"type": "boolean"},
            "tokenization_workers": {"type": "integer"},
            "version": {"type": "string"},
            "sha": {"type": "string", "nullable": True},
            "docker_label": {"type": "string", "nullable": True},
            "embedding_types": {
                "type": "array",
                "items": {"type": "string"},
                "description": "tei-ort (embedding models): the `embedding_type` values served",
            },
            "quantization": {
                "type": "object",
                "nullable": True,
                "description": "tei-ort: the int8 / uint8 calibration (set, texts, sha256 of "
                "the texts, whether the engine cache entry keeps it, and the per-dimension "
                "`normalized_ranges` {min, max} of full normalized vectors)",
            },
            "input_types": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "tei-ort: Cohere input_type -> the prompt name it embeds with",
            },
        },
        ("model_id", "model_type", "max_input_length", "max_client_batch_size", "version"),
    ),
}
