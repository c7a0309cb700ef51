"""Request bodies: parsed with orjson, checked by hand, strict on types, clear in messages.

Every problem raises ``BodyError`` (422; the body is not what the route takes) or
``JsonSyntaxError`` (400; the body is not JSON), as TEI's JSON extractor answers them.
Unknown fields are refused with the list of the fields a route takes. Every inference
route takes ``model``: it names the model to run when a server serves several
(``tei_ort.http.model_routes``); a one-model server ignores it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from tei_ort.errors import BodyError, JsonSyntaxError
from tei_ort.model.tokenization import Direction
from tei_ort.serving.embedding_types import EmbeddingType, EncodingFormat, parse_type
from tei_ort.serving.encoding import Item
from tei_ort.serving.late_chunking import Chunking
from tei_ort.serving.requests import (
    DecodeRequest,
    EmbedRequest,
    OpenAIRequest,
    PredictRequest,
    RerankRequest,
    SimilarityRequest,
    TokenizeRequest,
)

_U32 = 2**32


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise JsonSyntaxError(f"Failed to parse the request body as JSON: {exc}") from None


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


class Fields:
    """The fields of one JSON object, read with type checks; unknown names are refused."""

    def __init__(self, value: Any, allowed: tuple[str, ...], where: str = "body") -> None:
        if not isinstance(value, dict):
            raise BodyError(f"the {where} must be a JSON object, got {_type_name(value)}")
        unknown = [key for key in value if key not in allowed]
        if unknown:
            expected = ", ".join(f"`{name}`" for name in allowed)
            raise BodyError(
                f"unknown field `{unknown[0]}` in the {where}, expected one of {expected}"
            )
        self.data: Mapping[str, Any] = value
        self.where = where

    def _fail(self, name: str, expected: str, value: Any) -> BodyError:
        return BodyError(f"`{name}` must be {expected}, got {_type_name(value)}")

    def has(self, name: str) -> bool:
        return name in self.data

    def required(self, name: str) -> Any:
        if name not in self.data:
            raise BodyError(f"missing field `{name}` in the {self.where}")
        return self.data[name]

    def opt_bool(self, name: str) -> bool | None:
        value = self.data.get(name)
        if value is None or isinstance(value, bool):
            return value
        raise self._fail(name, "a boolean or null", value)

    def boolean(self, name: str, default: bool) -> bool:
        value = self.data.get(name, default)
        if isinstance(value, bool):
            return value
        raise self._fail(name, "a boolean", value)

    def opt_str(self, name: str) -> str | None:
        value = self.data.get(name)
        if value is None or isinstance(value, str):
            return value
        raise self._fail(name, "a string or null", value)

    def string(self, name: str) -> str:
        value = self.required(name)
        if isinstance(value, str):
            return value
        raise self._fail(name, "a string", value)

    def opt_uint(self, name: str) -> int | None:
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        raise self._fail(name, "a non-negative integer or null", value)

    def direction(self, name: str = "truncation_direction") -> Direction:
        value = self.data.get(name)
        if value is None:
            return "right"
        if value in ("right", "Right", "left", "Left"):  # TEI's serde names and aliases
            return "left" if value in ("left", "Left") else "right"
        raise BodyError(f'`{name}` must be "right" or "left", got {value!r}')


def flatten_parameters(data: Any) -> Any:
    """Move the fields of a Hugging Face ``"parameters"`` object to the top level.

    ``huggingface_hub`` and LangChain clients send ``{"inputs": ..., "parameters": {...}}``;
    TEI ignores ``parameters``, tei-ort applies them (the top-level field wins), and
    checks their names and types like any other field.
    """
    if not isinstance(data, dict) or "parameters" not in data:
        return data
    parameters = data["parameters"]
    rest = {key: value for key, value in data.items() if key != "parameters"}
    if parameters is None:
        return rest
    if not isinstance(parameters, dict):
        raise BodyError(f"`parameters` must be an object, got {_type_name(parameters)}")
    return {**parameters, **rest}


def _token_ids(value: list[Any], name: str) -> list[int]:
    for token in value:
        if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < _U32:
            raise BodyError(
                f"`{name}` token ids must be integers between 0 and {_U32 - 1}, got {token!r}"
            )
    return value


def _is_ids(value: list[Any]) -> bool:
    return bool(value) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)


def parse_inputs(value: Any, name: str = "inputs") -> tuple[list[Item], bool]:
    """TEI's ``Input``: a string, a list of token ids (one input), or a batch of those.

    Returns the inputs and whether the request was a single input.
    """
    expected = "a string, a list of token ids, or a list of strings and token-id lists"
    if isinstance(value, str):
        return [value], True
    if not isinstance(value, list):
        raise BodyError(f"`{name}` must be {expected}, got {_type_name(value)}")
    if not value:
        # TEI's untagged enum tries a single input first: [] is one empty list of ids,
        # refused later as an empty input
        return [[]], True
    if _is_ids(value):
        return [_token_ids(value, name)], True
    items: list[Item] = []
    for element in value:
        if isinstance(element, str):
            items.append(element)
        elif isinstance(element, list):
            items.append(_token_ids(element, name))
        else:
            raise BodyError(f"`{name}` must be {expected}; an element is {_type_name(element)}")
    return items, False


def _sequence(value: list[Any], name: str) -> str | tuple[str, str]:
    if not all(isinstance(v, str) for v in value) or not 1 <= len(value) <= 2:
        raise BodyError(
            f"`{name}` must be a string, a pair of strings [string, string] or a batch of "
            f"mixed strings and pairs [[string], [string, string], ...]"
        )
    return value[0] if len(value) == 1 else (value[0], value[1])


def parse_predict_inputs(
    value: Any, name: str = "inputs"
) -> tuple[list[str | tuple[str, str]], bool]:
    """TEI's ``PredictInput``: ``"a"``; ``["a"]``; ``["a", "b"]`` (ONE pair); a batch
    ``[["a"], ["a", "b"], ...]``."""
    if isinstance(value, str):
        return [value], True
    if not isinstance(value, list) or not value:
        raise BodyError(
            f"`{name}` must be a string, a pair of strings [string, string] or a batch of "
            f"mixed strings and pairs [[string], [string, string], ...]"
        )
    if isinstance(value[0], str):
        return [_sequence(value, name)], True
    items: list[str | tuple[str, str]] = []
    for element in value:
        if not isinstance(element, list):
            raise BodyError(
                f"`{name}` batch elements must be [string] or [string, string], got "
                f"{_type_name(element)}"
            )
        items.append(_sequence(element, name))
    return items, False


def _strings(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BodyError(f"`{name}` must be a list of strings")
    return value


_EMBED_FIELDS = (
    "inputs",
    "truncate",
    "truncation_direction",
    "prompt_name",
    "normalize",
    "dimensions",
    "model",
    "embedding_type",  # tei-ort
    "encoding_format",  # tei-ort
)
_EMBED_ALL_FIELDS = ("inputs", "truncate", "truncation_direction", "prompt_name", "model")
# tei-ort's late-interaction fields (ColBERT, BGE-M3); absent, the routes are TEI's
_EMBED_LATE_FIELDS = ("input_type", "outputs", "chunks", "late")
_EMBED_ALL_LATE_FIELDS = ("input_type", "encoding_format", "embedding_dtype")
HYBRID_OUTPUTS = ("dense", "sparse", "multi_vector")


def parse_embed(data: Any, *, pooled: bool = True, tokens: bool = False) -> EmbedRequest:
    """/embed (``pooled``) and /embed_all (``tokens``), /embed_sparse (no normalize, no
    dimensions)."""
    allowed: tuple[str, ...] = _EMBED_FIELDS + _EMBED_LATE_FIELDS if pooled else _EMBED_ALL_FIELDS
    if tokens:
        allowed = allowed + _EMBED_ALL_LATE_FIELDS
    fields = Fields(flatten_parameters(data), allowed)
    fields.opt_str("model")
    inputs, single = parse_inputs(fields.required("inputs"))
    kind = _embedding_type(fields)
    late = _late_embed_fields(fields)
    if ("chunking" in late or "outputs" in late) and (
        kind is not EmbeddingType.FLOAT or late["encoding_format"] != "float"
    ):
        raise BodyError(
            "`embedding_type` and `encoding_format` apply to one vector per input, not to "
            "`chunks` or `outputs`"
        )
    return EmbedRequest(
        inputs=inputs,
        single=single,
        truncate=fields.opt_bool("truncate"),
        truncation_direction=fields.direction(),
        prompt_name=fields.opt_str("prompt_name"),
        normalize=fields.boolean("normalize", True) if pooled else False,
        dimensions=fields.opt_uint("dimensions") if pooled else None,
        embedding_types=() if kind is EmbeddingType.FLOAT else (kind,),
        **late,
    )


def _embedding_type(fields: Fields) -> EmbeddingType:
    """tei-ort's ``embedding_type`` (float when absent or null)."""
    value = fields.data.get("embedding_type")
    return EmbeddingType.FLOAT if value is None else parse_type(value)


def _encoding_format(fields: Fields) -> EncodingFormat:
    """``encoding_format``: float (absent or null) or base64."""
    return (
        "base64"
        if _choice(fields, "encoding_format", ("float", "base64"), "float") == "base64"
        else "float"
    )


def _choice(fields: Fields, name: str, choices: tuple[str, ...], default: str) -> str:
    value = fields.data.get(name)
    if value is None:
        return default
    if value not in choices:
        expected = " or ".join(f'"{c}"' for c in choices)
        raise BodyError(f"`{name}` must be {expected}, got {value!r}")
    return str(value)


def _late_embed_fields(fields: Fields) -> dict[str, Any]:
    """input_type, encoding_format, embedding_dtype and outputs, as EmbedRequest fields."""
    late: dict[str, Any] = {
        "query": _choice(fields, "input_type", ("query", "document"), "document") == "query",
        "encoding_format": _encoding_format(fields),
        "embedding_dtype": _choice(fields, "embedding_dtype", ("float32", "float16"), "float32"),
    }
    chunking = _chunking(fields)
    if chunking is not None:
        late["chunking"] = chunking
    outputs = fields.data.get("outputs")
    if outputs is not None:
        if (
            not isinstance(outputs, list)
            or not outputs
            or not all(o in HYBRID_OUTPUTS for o in outputs)
            or len(set(outputs)) != len(outputs)
        ):
            raise BodyError(
                '`outputs` must be a non-empty list of distinct "dense", "sparse", "multi_vector"'
            )
        late["outputs"] = tuple(outputs)
    return late


def _chunking(fields: Fields) -> Chunking | None:
    """/embed `chunks`: {"size": tokens, "overlap": tokens}, or per input a list of
    [start, end) character spans; `late` (default true) only beside it."""
    value = fields.data.get("chunks")
    late = fields.opt_bool("late")
    if value is None:
        if late is not None:
            raise BodyError("`late` needs `chunks`")
        return None
    if isinstance(value, dict):
        sub = Fields(value, ("size", "overlap"), "`chunks` object")
        size = sub.opt_uint("size")
        overlap = sub.opt_uint("overlap") or 0
        if size is None or size < 1 or overlap >= size:
            raise BodyError("`chunks` needs `size` >= 1 and 0 <= `overlap` < `size`")
        return Chunking(size=size, overlap=overlap, late=late is not False)
    spans: list[list[tuple[int, int]]] = []
    if isinstance(value, list):
        for per_input in value:
            if not isinstance(per_input, list) or not per_input:
                break
            pairs = [_span(pair) for pair in per_input]
            if None in pairs:
                break
            spans.append([p for p in pairs if p is not None])
        else:
            return Chunking(spans=spans, late=late is not False)
    raise BodyError(
        '`chunks` must be {"size": n, "overlap": m} or, for each input, a non-empty list '
        "of [start, end] character offsets"
    )


def _span(pair: Any) -> tuple[int, int] | None:
    if (
        isinstance(pair, list)
        and len(pair) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in pair)
    ):
        return int(pair[0]), int(pair[1])
    return None


def _hybrid_weights(fields: Fields) -> tuple[float, float, float] | None:
    value = fields.data.get("hybrid_weights")
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not all(isinstance(w, int | float) and not isinstance(w, bool) for w in value)
        or any(w < 0 for w in value)
        or sum(value) <= 0
    ):
        raise BodyError(
            "`hybrid_weights` must be three non-negative numbers [dense, sparse, colbert] "
            "with a positive sum"
        )
    return float(value[0]), float(value[1]), float(value[2])


def parse_predict(data: Any) -> PredictRequest:
    fields = Fields(
        flatten_parameters(data),
        ("inputs", "truncate", "truncation_direction", "raw_scores", "model"),
    )
    fields.opt_str("model")
    inputs, single = parse_predict_inputs(fields.required("inputs"))
    return PredictRequest(
        inputs=inputs,
        single=single,
        truncate=fields.opt_bool("truncate"),
        truncation_direction=fields.direction(),
        raw_scores=fields.boolean("raw_scores", False),
    )


_RERANK_FIELDS = (
    "query",
    "texts",
    "truncate",
    "truncation_direction",
    "raw_scores",
    "return_text",
    "instruction",
    "model",
    "hybrid_weights",
)
# Cohere v1/v2 and Jina fields; the ones that change nothing here are accepted and ignored
_DOCUMENTS_FIELDS = (
    "query",
    "documents",
    "top_n",
    "return_documents",
    "model",
    "truncate",
    "truncation_direction",
    "raw_scores",
    "return_text",
    "max_chunks_per_doc",
    "max_tokens_per_doc",
    "rank_fields",
    "user",
    "instruction",
    "hybrid_weights",
)


def _documents(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise BodyError(f"`documents` must be a list, got {_type_name(value)}")
    texts: list[str] = []
    for document in value:
        if isinstance(document, str):
            texts.append(document)
        elif isinstance(document, dict) and isinstance(document.get("text"), str):
            texts.append(document["text"])
        else:
            raise BodyError('`documents` elements must be strings or {"text": string} objects')
    return texts


def parse_rerank(data: Any, *, documents_form: bool | None = None) -> RerankRequest:
    """``documents_form``: None decides by the body (``documents`` present or not)."""
    if documents_form is None:
        documents_form = isinstance(data, dict) and "documents" in data and "texts" not in data
    if not documents_form:
        fields = Fields(data, _RERANK_FIELDS)
        fields.opt_str("model")
        return RerankRequest(
            query=fields.string("query"),
            texts=_strings(fields.required("texts"), "texts"),
            truncate=fields.opt_bool("truncate"),
            truncation_direction=fields.direction(),
            raw_scores=fields.boolean("raw_scores", False),
            return_text=fields.boolean("return_text", False),
            instruction=fields.opt_str("instruction"),
            hybrid_weights=_hybrid_weights(fields),
        )
    fields = Fields(data, _DOCUMENTS_FIELDS)
    top_n = fields.opt_uint("top_n")
    return_documents = fields.opt_bool("return_documents")
    return RerankRequest(
        query=fields.string("query"),
        texts=_documents(fields.required("documents")),
        documents_form=True,
        truncate=fields.opt_bool("truncate"),
        truncation_direction=fields.direction(),
        raw_scores=fields.boolean("raw_scores", False),
        return_text=bool(return_documents) or fields.boolean("return_text", False),
        top_n=top_n,
        model=fields.opt_str("model"),
        instruction=fields.opt_str("instruction"),
        hybrid_weights=_hybrid_weights(fields),
    )


def parse_similarity(data: Any) -> SimilarityRequest:
    fields = Fields(data, ("inputs", "parameters", "model"))
    fields.opt_str("model")
    inputs = Fields(fields.required("inputs"), ("source_sentence", "sentences"), "`inputs` object")
    parameters_value = fields.data.get("parameters")
    parameters = Fields(
        {} if parameters_value is None else parameters_value,
        ("truncate", "truncation_direction", "prompt_name", "model"),
        "`parameters` object",
    )
    parameters.opt_str("model")
    return SimilarityRequest(
        source_sentence=inputs.string("source_sentence"),
        sentences=_strings(inputs.required("sentences"), "sentences"),
        truncate=parameters.opt_bool("truncate"),
        truncation_direction=parameters.direction(),
        prompt_name=parameters.opt_str("prompt_name"),
    )


def parse_tokenize(data: Any) -> TokenizeRequest:
    fields = Fields(
        flatten_parameters(data), ("inputs", "add_special_tokens", "prompt_name", "model")
    )
    fields.opt_str("model")
    value = fields.required("inputs")
    if isinstance(value, str):
        inputs, single = [value], True
    else:
        inputs, single = _strings(value, "inputs"), False
    return TokenizeRequest(
        inputs=inputs,
        single=single,
        add_special_tokens=fields.boolean("add_special_tokens", True),
        prompt_name=fields.opt_str("prompt_name"),
    )


def parse_decode(data: Any) -> DecodeRequest:
    fields = Fields(data, ("ids", "skip_special_tokens", "model"))
    fields.opt_str("model")
    value = fields.required("ids")
    expected = "`ids` must be a list of token ids or a list of lists of token ids"
    if not isinstance(value, list):
        raise BodyError(f"{expected}, got {_type_name(value)}")
    if not value or all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        ids, single = [_token_ids(value, "ids")], True
    elif all(isinstance(v, list) for v in value):
        ids, single = [_token_ids(v, "ids") for v in value], False
    else:
        raise BodyError(expected)
    return DecodeRequest(
        ids=ids, single=single, skip_special_tokens=fields.boolean("skip_special_tokens", True)
    )


def parse_openai(data: Any) -> OpenAIRequest:
    allowed = ("input", "model", "user", "encoding_format", "dimensions", "embedding_type")
    fields = Fields(data, allowed)
    inputs, single = parse_inputs(fields.required("input"), "input")
    fields.opt_str("user")
    return OpenAIRequest(
        inputs=inputs,
        single=single,
        model=fields.opt_str("model"),
        encoding_format=_encoding_format(fields),
        dimensions=fields.opt_uint("dimensions"),
        embedding_type=_embedding_type(fields),  # tei-ort's extension
    )


def parse_vertex(data: Any) -> list[Any]:
    fields = Fields(data, ("instances", "model"))
    fields.opt_str("model")
    instances = fields.required("instances")
    if not isinstance(instances, list):
        raise BodyError(f"`instances` must be a list, got {_type_name(instances)}")
    return instances
