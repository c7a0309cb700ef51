"""The request schemas of the OpenAPI document, stating what this server
accepts: the limits of the served model and of the flags (``Limits``) are written into
them, so that a request the document allows is one the server takes (and the seeded
schemathesis pass of the tests holds the two together).

What a schema cannot say is in its description: a pair needs one non-empty text, and an
input over ``max_input_length`` tokens is refused unless it is truncated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: token ids the body parser takes (a u32), when the vocabulary is not known
_U32_MAX = 2**32 - 1


@dataclass(frozen=True)
class Limits:
    """What the served model and the flags accept (see ``Routes``)."""

    max_client_batch_size: int = 32
    vocab_size: int | None = None  # token ids are below it
    embedding_size: int | None = None  # the largest `dimensions`
    prompt_names: tuple[str, ...] = ()
    #: what POST / and /invocations run: embed, embed_sparse, predict, rerank, similarity
    default_mode: str = "embed"
    #: the served names when the server serves several models (empty: one model)
    served_models: tuple[str, ...] = ()
    #: the served model's late-interaction format ("bge-m3", "colbert", "pylate"), None for
    #: other models; it decides which of tei-ort's late-interaction and late-chunking
    #: fields the routes take ("any", the default, documents them all)
    late_interaction: str | None = "any"


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True, "default": None}


_BOOL_OR_NULL = _nullable({"type": "boolean"})
_DIRECTION = {
    "type": "string",
    "enum": ["right", "left", "Right", "Left", None],
    "nullable": True,
    "default": "right",
}
_TEXT = {"type": "string", "minLength": 1}
#: tei-ort's typed embeddings (README "Typed embeddings and Cohere's embed API")
_EMBEDDING_TYPE = {
    "type": "string",
    "enum": ["float", "int8", "uint8", "binary", "ubinary", None],
    "nullable": True,
    "default": "float",
    "description": "tei-ort: float32; int8 / uint8 over the model's calibrated per-dimension "
    "ranges (/info `quantization`); binary (int8) / ubinary (uint8): 1 bit per dimension, "
    "8 per byte, most significant first (the vector length must be a multiple of 8).",
}
_ENCODING_FORMAT = {
    "type": "string",
    "enum": ["float", "base64", None],
    "nullable": True,
    "default": "float",
}
_INPUT_TYPE = {
    "type": "string",
    "enum": ["query", "document", None],
    "nullable": True,
    "default": "document",
    "description": "tei-ort, late-interaction models (ColBERT, BGE-M3): encode the inputs "
    "as queries or as documents; refused for other models.",
}
_SPAN = {
    "type": "array",
    "minItems": 2,
    "maxItems": 2,
    "items": {"type": "integer", "minimum": 0},
}
_CHUNKS = _nullable(
    {
        "description": "tei-ort, late chunking: one vector per chunk of each input, pooled "
        "(by the model's rule) from the token states of the whole input, in overlapping "
        "windows past the model's length. Either {size, overlap} in tokens, or for each "
        "input a list of [start, end) character offsets. The answer is, per input, "
        '{"spans": [[start, end], ...], "embeddings": [[...], ...]}.',
        "oneOf": [
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["size"],
                "properties": {
                    "size": {"type": "integer", "minimum": 1},
                    "overlap": {
                        "type": "integer",
                        "minimum": 0,
                        "nullable": True,
                        "default": 0,
                    },
                },
            },
            {"type": "array", "items": {"type": "array", "minItems": 1, "items": _SPAN}},
        ],
    }
)
_HYBRID_WEIGHTS = _nullable(
    {
        "type": "array",
        "minItems": 3,
        "maxItems": 3,
        "items": {"type": "number", "minimum": 0},
        "description": "tei-ort, BGE-M3: score by (w_dense * dense + w_sparse * sparse + "
        "w_colbert * colbert) / (w_dense + w_sparse + w_colbert), as FlagEmbedding's "
        "compute_score; absent, late-interaction models score by MaxSim.",
    }
)


def _object(
    properties: dict[str, Any], required: tuple[str, ...] = (), **more: Any
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "additionalProperties": False, **more}
    if required:
        schema["required"] = list(required)
    schema["properties"] = properties
    return schema


def _with_parameters(schema: dict[str, Any]) -> dict[str, Any]:
    """Say that the Hugging Face ``parameters`` object is taken too. Not as a property: its
    fields are used only where the top level lacks them (the top level wins), which a
    schema cannot state."""
    schema["description"] = (
        schema.get("description", "") + " The options may also come in a Hugging Face "
        '`"parameters"` object (huggingface_hub, LangChain); the top-level field wins.'
    ).strip()
    return schema


def _ids(top: int) -> dict[str, Any]:
    return {
        "type": "array",
        "minItems": 1,
        "items": {"type": "integer", "minimum": 0, "maximum": top},
    }


class _Requests:
    """The request schemas under one ``Limits``."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.batch = limits.max_client_batch_size
        top = _U32_MAX if limits.vocab_size is None else limits.vocab_size - 1
        self.ids = _ids(top)  # inputs: ids of the vocabulary
        if limits.prompt_names:
            self.prompt_name: dict[str, Any] = _nullable(
                {"type": "string", "enum": [*limits.prompt_names, None]}
            )
        else:
            self.prompt_name = {"nullable": True, "enum": [None], "default": None}
        self.prompt_name["description"] = (
            "A key of the model's sentence-transformers `prompts`; its text is prepended "
            "to every input."
        )

    def batch_of(self, item: dict[str, Any], *, less: int = 0) -> dict[str, Any]:
        return {"type": "array", "minItems": 1, "maxItems": self.batch - less, "items": item}

    def inputs(self) -> dict[str, Any]:
        return {
            "description": "A string, a list of token ids (one input), or a batch of those "
            f"(at most {self.batch}). Over max_input_length tokens without truncation: "
            "refused.",
            "oneOf": [_TEXT, self.ids, self.batch_of({"oneOf": [_TEXT, self.ids]})],
            "example": "What is Deep Learning?",
        }

    def dimensions(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "integer", "minimum": 1}
        if self.limits.embedding_size is not None:
            schema["maximum"] = self.limits.embedding_size
        schema["description"] = "Keep the first `dimensions` components (then normalize)."
        return _nullable(schema)

    def _embed_fields(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs(),
            "truncate": _BOOL_OR_NULL,
            "truncation_direction": _DIRECTION,
            "prompt_name": self.prompt_name,
        }

    def embed_sparse(self) -> dict[str, Any]:
        return _with_parameters(_object(self._embed_fields(), ("inputs",)))

    def embed_all(self) -> dict[str, Any]:
        fields = {
            **self._embed_fields(),
            **self._input_type(),
            "encoding_format": {
                "type": "string",
                "enum": ["float", "base64", None],
                "nullable": True,
                "default": "float",
                "description": "tei-ort: `base64` answers each input as "
                '{"shape": [n, D], "dtype": ..., "base64": row-major little-endian bytes}.',
            },
            "embedding_dtype": {
                "type": "string",
                "enum": ["float32", "float16", None],
                "nullable": True,
                "default": "float32",
                "description": "tei-ort: the precision of the answer's numbers.",
            },
        }
        return _with_parameters(_object(fields, ("inputs",)))

    def embed(self) -> dict[str, Any]:
        fields = {
            **self._embed_fields(),
            "normalize": {"type": "boolean", "default": True},
            "dimensions": self.dimensions(),
            "embedding_type": _EMBEDDING_TYPE,
            "encoding_format": {
                **_ENCODING_FORMAT,
                "description": "tei-ort: `base64` answers each vector as the base64 of its "
                "raw little-endian bytes (of `embedding_type`'s type).",
            },
            **self._input_type(),
        }
        if self.limits.late_interaction in (None, "any"):
            fields["chunks"] = _CHUNKS
            fields["late"] = {
                "type": "boolean",
                "nullable": True,
                "default": True,
                "description": "tei-ort, with `chunks`: false embeds each chunk on its own.",
            }
        if self.limits.late_interaction in ("bge-m3", "any"):
            fields["outputs"] = {
                "nullable": True,
                "default": None,
                "type": "array",
                "minItems": 1,
                "maxItems": 3,
                "uniqueItems": True,
                "items": {"type": "string", "enum": ["dense", "sparse", "multi_vector"]},
                "description": "tei-ort, BGE-M3: answer these outputs of each input from one "
                'engine pass, as {"dense": [...], "sparse": [{"index", "value"}], '
                '"multi_vector": [[...]]}; absent, /embed answers as TEI does.',
            }
        schema = _object(fields, ("inputs",))
        schema["anyOf"] = self._packable("embedding_type", "dimensions", ["float", "int8", "uint8"])
        return _with_parameters(schema)

    def _packable(self, types: str, dimensions: str, unpacked: list[str]) -> list[Any]:
        """binary / ubinary need a vector length that is a multiple of 8: the other types,
        or such a `dimensions`, or none when the model's own length is one."""
        many = types.endswith("s")
        kinds: dict[str, Any] = (
            {"type": "array", "nullable": True, "items": {"type": "string", "enum": unpacked}}
            if many
            else {"type": "string", "nullable": True, "enum": [*unpacked, None]}
        )
        options: list[Any] = [
            {"properties": {types: kinds}},
            {
                "properties": {dimensions: {"type": "integer", "multipleOf": 8}},
                "required": [dimensions],
            },
        ]
        size = self.limits.embedding_size
        if size is not None and size % 8 == 0:
            options.append({"properties": {dimensions: {"nullable": True, "enum": [None]}}})
        return options

    def _input_type(self) -> dict[str, Any]:
        return {} if self.limits.late_interaction is None else {"input_type": _INPUT_TYPE}

    def _hybrid(self) -> dict[str, Any]:
        bge_m3 = self.limits.late_interaction in ("bge-m3", "any")
        return {"hybrid_weights": _HYBRID_WEIGHTS} if bge_m3 else {}

    def predict(self) -> dict[str, Any]:
        pair = {"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "string"}}
        inputs = {
            "description": "A string, a pair [string, string] (one of them not empty), or a "
            f"batch [[string], [string, string], ...] of at most {self.batch}.",
            "oneOf": [_TEXT, pair, self.batch_of(pair)],
        }
        return _with_parameters(
            _object(
                {
                    "inputs": inputs,
                    "truncate": _BOOL_OR_NULL,
                    "truncation_direction": _DIRECTION,
                    "raw_scores": {"type": "boolean", "default": False},
                },
                ("inputs",),
            )
        )

    def rerank(self) -> dict[str, Any]:
        return _object(
            {
                "query": {"type": "string"},
                "texts": self.batch_of({"type": "string"}),
                "truncate": _BOOL_OR_NULL,
                "truncation_direction": _DIRECTION,
                "raw_scores": {"type": "boolean", "default": False},
                "return_text": {"type": "boolean", "default": False},
                "instruction": _nullable(
                    {
                        "type": "string",
                        "description": "tei-ort: the task line of prompt-template "
                        "re-rankers (Qwen3-Reranker); null keeps the model's default.",
                    }
                ),
                **self._hybrid(),
            },
            ("query", "texts"),
            description="A (query, text) pair needs one non-empty text.",
        )

    def documents_rerank(self) -> dict[str, Any]:
        document = {
            "oneOf": [
                {"type": "string"},
                {
                    "type": "object",
                    "required": ["text"],
                    "properties": {"text": {"type": "string"}},
                },
            ]
        }
        return _object(
            {
                "query": {"type": "string"},
                "documents": self.batch_of(document),
                "top_n": _nullable({"type": "integer", "minimum": 0}),
                "return_documents": _BOOL_OR_NULL,
                "truncate": _BOOL_OR_NULL,
                "truncation_direction": _DIRECTION,
                "raw_scores": {"type": "boolean", "default": False},
                "return_text": {"type": "boolean", "default": False},
                "max_chunks_per_doc": {"description": "accepted and ignored"},
                "max_tokens_per_doc": {"description": "accepted and ignored"},
                "rank_fields": {"description": "accepted and ignored"},
                "user": {"description": "accepted and ignored"},
                "instruction": _nullable({"type": "string"}),
                **self._hybrid(),
            },
            ("query", "documents"),
            description='The Dify / FastGPT / Cohere / Jina form, answered as {"results": [...]}.',
        )

    def model(self) -> dict[str, Any]:
        """The ``model`` field, which the body parser takes on every route."""
        names = self.limits.served_models
        if not names:
            return _nullable(
                {"type": "string", "description": "Accepted and ignored: one model is served."}
            )
        listed = ", ".join(f"`{name}`" for name in names)
        return _nullable(
            {
                "type": "string",
                "description": f"The model that answers: {listed} (or its model id); "
                f"`{names[0]}` when absent. Another name is refused (422). Under "
                "`/models/{name}` the path names the model and this field is ignored.",
            }
        )

    def similarity(self) -> dict[str, Any]:
        sentences = _object(
            {"source_sentence": _TEXT, "sentences": self.batch_of(_TEXT, less=1)},
            ("source_sentence", "sentences"),
        )
        parameters = _object(
            {
                "truncate": _BOOL_OR_NULL,
                "truncation_direction": _DIRECTION,
                "prompt_name": self.prompt_name,
            },
            nullable=True,
        )
        return _object({"inputs": sentences, "parameters": parameters}, ("inputs",))

    def tokenize(self) -> dict[str, Any]:
        return _with_parameters(
            _object(
                {
                    "inputs": {"oneOf": [_TEXT, self.batch_of(_TEXT)]},
                    "add_special_tokens": {"type": "boolean", "default": True},
                    "prompt_name": self.prompt_name,
                },
                ("inputs",),
                description="At most max_input_length x 250 tokens in all.",
            )
        )

    def decode(self) -> dict[str, Any]:
        return _object(
            {
                # any u32 decodes (an id the vocabulary lacks decodes to nothing, as in TEI)
                "ids": {"oneOf": [_ids(_U32_MAX), self.batch_of(_ids(_U32_MAX))]},
                "skip_special_tokens": {"type": "boolean", "default": True},
            },
            ("ids",),
        )

    def openai(self) -> dict[str, Any]:
        return _object(
            {
                "input": self.inputs(),
                "user": _nullable({"type": "string"}),
                "encoding_format": _ENCODING_FORMAT,
                "dimensions": self.dimensions(),
                "embedding_type": _EMBEDDING_TYPE,
            },
            ("input",),
            anyOf=self._packable("embedding_type", "dimensions", ["float", "int8", "uint8"]),
        )

    def cohere(self, version: int) -> dict[str, Any]:
        """Cohere's embed request (v2, or v1's subset)."""
        types = ["float", "int8", "uint8", "binary", "ubinary", "base64"]
        fields: dict[str, Any] = {
            "input_type": _nullable(
                {
                    "type": "string",
                    "description": "search_query, search_document, classification, "
                    "clustering, ...: embedded with the model's prompt for it (/info "
                    "`input_types`, `--input-type-prompt`), as is when it has none.",
                }
            ),
            "texts": self.batch_of(_TEXT),
            "images": _nullable(
                {
                    "type": "array",
                    "maxItems": 0,
                    "description": "Not supported: texts only (a non-empty list is refused).",
                }
            ),
            "embedding_types": _nullable(
                {
                    "type": "array",
                    "items": {"type": "string", "enum": types},
                    "description": "The types to answer, in this order (default: float). "
                    "base64 is the float32 vector's little-endian bytes.",
                }
            ),
            "truncate": _nullable(
                {
                    "type": "string",
                    "enum": ["NONE", "START", "END", None],
                    "description": "END (default) drops the end of a long input, START its "
                    "start; NONE refuses it (422).",
                }
            ),
        }
        if version == 2:
            text = _object(
                {"type": {"type": "string", "enum": ["text"]}, "text": _TEXT}, ("type", "text")
            )
            content = {"type": "array", "minItems": 1, "maxItems": 1, "items": text}
            fields["inputs"] = {
                **self.batch_of(_object({"content": content}, ("content",))),
                "description": "Instead of `texts`: inputs of one text content each.",
            }
            fields["output_dimension"] = self.dimensions()
            fields["max_tokens"] = {
                "nullable": True,
                "enum": [None],
                "description": "Not supported (refused): see `truncate`.",
            }
            fields["priority"] = _nullable(
                {"type": "integer", "minimum": 0, "description": "Accepted; one queue."}
            )
        schema = _object(fields, description=f"Cohere's embed API, v{version}.")
        if version == 2:
            schema["oneOf"] = [{"required": ["texts"]}, {"required": ["inputs"]}]
        else:
            schema["required"] = ["texts"]
        unpacked = ["float", "int8", "uint8", "base64"]
        packable = self._packable("embedding_types", "output_dimension", unpacked)
        schema["anyOf"] = packable if version == 2 else packable[:1] + packable[2:]
        return schema

    def vertex(self) -> dict[str, Any]:
        instances: dict[str, dict[str, Any]] = {
            "predict": ref("PredictRequest"),
            "rerank": {"oneOf": [ref("RerankRequest"), ref("PredictRequest")]},
            "embed_sparse": ref("EmbedSparseRequest"),
        }
        instance = instances.get(self.limits.default_mode, ref("EmbedRequest"))
        return _object(
            {"instances": {"type": "array", "items": instance}},
            ("instances",),
            description=(
                f"Any number of instances (within the payload limit), each of at most "
                f"{self.batch} inputs; admitted together, in arrival order."
            ),
        )


def request_schemas(limits: Limits) -> dict[str, Any]:
    requests = _Requests(limits)
    schemas = {
        "EmbedRequest": requests.embed(),
        "EmbedAllRequest": requests.embed_all(),
        "EmbedSparseRequest": requests.embed_sparse(),
        "PredictRequest": requests.predict(),
        "RerankRequest": requests.rerank(),
        "DocumentsRerankRequest": requests.documents_rerank(),
        "SimilarityRequest": requests.similarity(),
        "TokenizeRequest": requests.tokenize(),
        "DecodeRequest": requests.decode(),
        "OpenAICompatRequest": requests.openai(),
        "CohereEmbedRequest": requests.cohere(2),
        "CohereEmbedV1Request": requests.cohere(1),
        "VertexRequest": requests.vertex(),
        "AnyRerankRequest": {"oneOf": [ref("RerankRequest"), ref("DocumentsRerankRequest")]},
    }
    # every body, and similarity's parameters, may name the model (tei_ort.http.schemas)
    model = requests.model()
    for schema in schemas.values():
        if "properties" in schema:
            schema["properties"]["model"] = model
    schemas["SimilarityRequest"]["properties"]["parameters"]["properties"]["model"] = model
    return schemas
