"""tei-ort's own OpenAPI document (served at /api-doc/openapi.json; /docs shows it).

It describes what the server does (TEI's code behaviour), not TEI's published document.
"""

from __future__ import annotations

from typing import Any

from tei_ort.model.info import ModelKind
from tei_ort.version import TEI_VERSION

TITLE = "tei-ort (Text Embeddings Inference API)"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_NULLABLE_BOOL = {"type": "boolean", "nullable": True, "default": None}
_DIRECTION = {"type": "string", "enum": ["right", "left", "Right", "Left"], "default": "right"}
_PROMPT_NAME = {
    "type": "string",
    "nullable": True,
    "default": None,
    "description": "A key of the model's sentence-transformers `prompts`; its text is "
    "prepended to every input.",
}
_IDS = {"type": "array", "items": {"type": "integer", "minimum": 0}}
_INPUT = {
    "description": "A string, a list of token ids (one input), or a batch of those.",
    "oneOf": [
        {"type": "string"},
        _IDS,
        {"type": "array", "items": {"oneOf": [{"type": "string"}, _IDS]}},
    ],
    "example": "What is Deep Learning?",
}
_PREDICT_INPUT = {
    "description": "A string, a pair [string, string], or a batch [[string], [string, string]].",
    "oneOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 2},
        {
            "type": "array",
            "items": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 2},
        },
    ],
}
_VECTOR = {"type": "array", "items": {"type": "number", "format": "float"}}

SCHEMAS: dict[str, Any] = {
    "ErrorResponse": {
        "type": "object",
        "required": ["error", "error_type"],
        "properties": {"error": {"type": "string"}, "error_type": _ref("ErrorType")},
    },
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
    "OpenAICompatErrorResponse": {
        "type": "object",
        "required": ["message", "code", "type"],
        "properties": {
            "message": {"type": "string"},
            "code": {"type": "integer"},
            "type": _ref("ErrorType"),
        },
    },
    "EmbedRequest": {
        "type": "object",
        "required": ["inputs"],
        "additionalProperties": False,
        "properties": {
            "inputs": _INPUT,
            "truncate": _NULLABLE_BOOL,
            "truncation_direction": _DIRECTION,
            "prompt_name": _PROMPT_NAME,
            "normalize": {"type": "boolean", "default": True},
            "dimensions": {
                "type": "integer",
                "nullable": True,
                "minimum": 1,
                "description": "Keep the first `dimensions` components (then normalize).",
            },
        },
    },
    "EmbedResponse": {"type": "array", "items": _VECTOR},
    "EmbedAllRequest": {
        "type": "object",
        "required": ["inputs"],
        "additionalProperties": False,
        "properties": {
            "inputs": _INPUT,
            "truncate": _NULLABLE_BOOL,
            "truncation_direction": _DIRECTION,
            "prompt_name": _PROMPT_NAME,
        },
    },
    "EmbedAllResponse": {"type": "array", "items": {"type": "array", "items": _VECTOR}},
    "SparseValue": {
        "type": "object",
        "properties": {"index": {"type": "integer"}, "value": {"type": "number"}},
    },
    "EmbedSparseResponse": {
        "type": "array",
        "items": {"type": "array", "items": _ref("SparseValue")},
    },
    "PredictRequest": {
        "type": "object",
        "required": ["inputs"],
        "additionalProperties": False,
        "properties": {
            "inputs": _PREDICT_INPUT,
            "truncate": _NULLABLE_BOOL,
            "truncation_direction": _DIRECTION,
            "raw_scores": {"type": "boolean", "default": False},
        },
    },
    "Prediction": {
        "type": "object",
        "properties": {"score": {"type": "number"}, "label": {"type": "string"}},
    },
    "PredictResponse": {
        "oneOf": [
            {"type": "array", "items": _ref("Prediction")},
            {"type": "array", "items": {"type": "array", "items": _ref("Prediction")}},
        ]
    },
    "RerankRequest": {
        "type": "object",
        "required": ["query"],
        "description": "TEI's form (`texts`) or the Dify / FastGPT / Cohere / Jina form "
        '(`documents`, answered as {"results": [...]}).',
        "properties": {
            "query": {"type": "string"},
            "texts": {"type": "array", "items": {"type": "string"}},
            "documents": {
                "type": "array",
                "items": {
                    "oneOf": [
                        {"type": "string"},
                        {"type": "object", "properties": {"text": {"type": "string"}}},
                    ]
                },
            },
            "truncate": _NULLABLE_BOOL,
            "truncation_direction": _DIRECTION,
            "raw_scores": {"type": "boolean", "default": False},
            "return_text": {"type": "boolean", "default": False},
            "top_n": {"type": "integer", "nullable": True},
            "return_documents": {"type": "boolean", "default": False},
            "model": {"type": "string", "nullable": True},
            "instruction": {
                "type": "string",
                "nullable": True,
                "description": "tei-ort: the task line of prompt-template re-rankers "
                "(Qwen3-Reranker); null keeps the model's default.",
            },
        },
    },
    "Rank": {
        "type": "object",
        "properties": {
            "index": {"type": "integer"},
            "text": {"type": "string", "nullable": True},
            "score": {"type": "number"},
        },
    },
    "RerankResponse": {"type": "array", "items": _ref("Rank")},
    "DocumentsRerankResponse": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "model": {"type": "string"},
            "results": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "index": {"type": "integer"},
                        "relevance_score": {"type": "number"},
                        "document": {
                            "type": "object",
                            "properties": {"text": {"type": "string"}},
                        },
                    },
                },
            },
            "usage": {
                "type": "object",
                "properties": {
                    "prompt_tokens": {"type": "integer"},
                    "total_tokens": {"type": "integer"},
                },
            },
        },
    },
    "SimilarityRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "inputs": {
                "type": "object",
                "required": ["source_sentence", "sentences"],
                "properties": {
                    "source_sentence": {"type": "string"},
                    "sentences": {"type": "array", "items": {"type": "string"}},
                },
            },
            "parameters": {
                "type": "object",
                "nullable": True,
                "properties": {
                    "truncate": _NULLABLE_BOOL,
                    "truncation_direction": _DIRECTION,
                    "prompt_name": _PROMPT_NAME,
                },
            },
        },
    },
    "SimilarityResponse": {"type": "array", "items": {"type": "number"}},
    "TokenizeRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "inputs": {
                "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
            },
            "add_special_tokens": {"type": "boolean", "default": True},
            "prompt_name": _PROMPT_NAME,
        },
    },
    "SimpleToken": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "text": {"type": "string"},
            "special": {"type": "boolean"},
            "start": {"type": "integer", "nullable": True, "description": "UTF-8 byte offset"},
            "stop": {"type": "integer", "nullable": True, "description": "UTF-8 byte offset"},
        },
    },
    "TokenizeResponse": {
        "type": "array",
        "items": {"type": "array", "items": _ref("SimpleToken")},
    },
    "DecodeRequest": {
        "type": "object",
        "required": ["ids"],
        "properties": {
            "ids": {"oneOf": [_IDS, {"type": "array", "items": _IDS}]},
            "skip_special_tokens": {"type": "boolean", "default": True},
        },
    },
    "DecodeResponse": {"type": "array", "items": {"type": "string"}},
    "OpenAICompatRequest": {
        "type": "object",
        "required": ["input"],
        "properties": {
            "input": _INPUT,
            "model": {"type": "string", "nullable": True},
            "user": {"type": "string", "nullable": True},
            "encoding_format": {"type": "string", "enum": ["float", "base64"], "default": "float"},
            "dimensions": {"type": "integer", "nullable": True},
        },
    },
    "OpenAICompatResponse": {
        "type": "object",
        "properties": {
            "object": {"type": "string", "example": "list"},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "object": {"type": "string", "example": "embedding"},
                        "embedding": {
                            "oneOf": [
                                _VECTOR,
                                {"type": "string", "description": "base64 little-endian f32"},
                            ]
                        },
                        "index": {"type": "integer"},
                    },
                },
            },
            "model": {"type": "string"},
            "usage": {
                "type": "object",
                "properties": {
                    "prompt_tokens": {"type": "integer"},
                    "total_tokens": {"type": "integer"},
                },
            },
        },
    },
    "VertexRequest": {
        "type": "object",
        "required": ["instances"],
        "properties": {"instances": {"type": "array", "items": {"type": "object"}}},
    },
    "VertexResponse": {
        "type": "object",
        "properties": {"predictions": {"type": "array", "items": {}}},
    },
    "Info": {
        "type": "object",
        "properties": {
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
        },
    },
}


def _errors(openai: bool = False) -> dict[str, Any]:
    schema = _ref("OpenAICompatErrorResponse" if openai else "ErrorResponse")
    content = {"application/json": {"schema": schema}}
    return {
        "400": {"description": "Empty input or malformed JSON", "content": content},
        "401": {"description": "Missing or wrong API key (no body)"},
        "413": {
            "description": "Body over the payload limit",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        "422": {
            "description": "Validation error (too many inputs, too long, bad dimensions, "
            "unknown prompt name), body not of the route's shape, or tokenization error",
            "content": content,
        },
        "424": {"description": "Inference failed or wrong model kind", "content": content},
        "429": {"description": "Model is overloaded", "content": content},
    }


def _post(summary: str, request: str, response: str, *, openai: bool = False) -> dict[str, Any]:
    return {
        "post": {
            "tags": ["Text Embeddings Inference"],
            "summary": summary,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref(request)}},
            },
            "responses": {
                "200": {
                    "description": summary,
                    "content": {"application/json": {"schema": _ref(response)}},
                },
                **_errors(openai),
            },
        }
    }


def _get(summary: str, responses: dict[str, Any]) -> dict[str, Any]:
    return {
        "get": {"tags": ["Text Embeddings Inference"], "summary": summary, "responses": responses}
    }


def openapi_document(kind: ModelKind | None = None) -> dict[str, Any]:
    """The document; ``kind`` names what POST / and /invocations do for the served model."""
    default_request, default_response = {
        ModelKind.CLASSIFIER: ("PredictRequest", "PredictResponse"),
        ModelKind.RERANKER: ("RerankRequest", "RerankResponse"),
    }.get(kind or ModelKind.EMBEDDING, ("EmbedRequest", "EmbedResponse"))
    health = {
        "200": {"description": "Everything is working fine"},
        "503": {
            "description": "The engine cannot run",
            "content": {"application/json": {"schema": _ref("ErrorResponse")}},
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
                    "content": {"application/json": {"schema": _ref("Info")}},
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
            "Get sparse embeddings (SPLADE models)", "EmbedAllRequest", "EmbedSparseResponse"
        ),
        "/predict": _post("Get predictions (classifiers)", "PredictRequest", "PredictResponse"),
        "/rerank": _post("Get ranks (re-rankers)", "RerankRequest", "RerankResponse"),
        "/v1/rerank": _post("Cohere / Jina re-rank", "RerankRequest", "DocumentsRerankResponse"),
        "/v2/rerank": _post("Cohere v2 re-rank", "RerankRequest", "DocumentsRerankResponse"),
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
        "/vertex": _post("Vertex AI compatible route", "VertexRequest", "VertexResponse"),
        "/invocations": _post(
            "SageMaker route: the model kind's own route", default_request, default_response
        ),
    }
    paths["/"] = {
        **_get("Health check", health),
        **_post("The model kind's own route", default_request, default_response),
    }
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
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
