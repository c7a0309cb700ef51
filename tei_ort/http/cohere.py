"""Cohere's embed API (``POST /v2/embed``, ``/v1/embed``): its bodies in, its answers out.

Parsed into the shared ``EmbedRequest`` (``input_type`` -> the model's prompt name,
``output_dimension`` -> Matryoshka ``dimensions``, ``truncate`` NONE / START / END ->
no truncation (422 over the limit) / drop the start / drop the end, ``embedding_types``
-> typed embeddings), answered by the shared handler, shaped as the ``cohere`` SDK's
``EmbedByTypeResponse`` (v2, and v1 with ``embedding_types``) or ``EmbedFloatsResponse``
(v1 without). Errors carry Cohere's ``{"id", "message"}`` body (``responses``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

from tei_ort.errors import BodyError, EmptyError
from tei_ort.http.schemas import Fields, _strings, _type_name
from tei_ort.model.tokenization import Direction
from tei_ort.serving.embedding_types import EmbeddingType, rows_base64
from tei_ort.serving.encoding import Item
from tei_ort.serving.handlers import TypedEmbeddings
from tei_ort.serving.requests import EmbedRequest

Version = Literal[1, 2]

#: Cohere's ``embedding_types``: ours, and ``base64`` (of the float32 vector)
COHERE_TYPES = (*(kind.value for kind in EmbeddingType), "base64")
TRUNCATE_VALUES = ("NONE", "START", "END")

_V2_FIELDS = (
    "model",
    "input_type",
    "texts",
    "images",
    "inputs",
    "max_tokens",
    "output_dimension",
    "embedding_types",
    "truncate",
    "priority",
)
_V1_FIELDS = ("model", "input_type", "texts", "images", "embedding_types", "truncate")


@dataclass(frozen=True)
class CohereRequest:
    version: Version
    texts: list[str]
    model: str | None
    input_type: str | None
    types: tuple[str, ...]  # as asked, in order (COHERE_TYPES); empty: v1's floats form
    truncate: bool
    direction: Direction
    dimensions: int | None

    def embed_request(self, prompt_name: str | None) -> EmbedRequest:
        kinds = {EmbeddingType.FLOAT if t == "base64" else EmbeddingType(t) for t in self.types}
        items: list[Item] = list(self.texts)
        return EmbedRequest(
            inputs=items,
            single=False,
            truncate=self.truncate,
            truncation_direction=self.direction,
            prompt_name=prompt_name,
            normalize=True,
            dimensions=self.dimensions,
            embedding_types=tuple(sorted(kinds or {EmbeddingType.FLOAT}, key=_order)),
        )


def _order(kind: EmbeddingType) -> int:
    return list(EmbeddingType).index(kind)


def parse_cohere(data: Any, version: Version) -> CohereRequest:
    fields = Fields(data, _V2_FIELDS if version == 2 else _V1_FIELDS)
    # Cohere requires it in v2; here it only chooses among several served models
    model = fields.opt_str("model")
    input_type = fields.opt_str("input_type")
    images = fields.data.get("images")
    if images is not None and (not isinstance(images, list) or images):
        raise BodyError("`images` are not supported: this server embeds texts")
    texts = _texts(fields, version)
    if not texts:
        raise EmptyError("`texts` cannot be empty")
    types = _types(fields.data.get("embedding_types"))
    if version == 2 and not types:
        types = ("float",)
    truncate = fields.data.get("truncate", "END")
    if truncate is None:
        truncate = "END"
    if truncate not in TRUNCATE_VALUES:
        raise BodyError(f'`truncate` must be one of "NONE", "START", "END", got {truncate!r}')
    max_tokens = fields.opt_uint("max_tokens")
    if max_tokens is not None:
        raise BodyError(
            "`max_tokens` is not supported: inputs are cut at the model's maximum input "
            "length (see `truncate`)"
        )
    fields.opt_uint("priority")  # accepted: one queue serves every request in order
    return CohereRequest(
        version=version,
        texts=texts,
        model=model,
        input_type=input_type,
        types=types,
        truncate=truncate != "NONE",
        direction="left" if truncate == "START" else "right",
        dimensions=fields.opt_uint("output_dimension"),
    )


def _texts(fields: Fields, version: Version) -> list[str]:
    if fields.has("inputs"):  # v2 only (v1's fields do not take it)
        if fields.has("texts"):
            raise BodyError("give either `texts` or `inputs`, not both")
        inputs = fields.data["inputs"]
        if not isinstance(inputs, list):
            raise BodyError(f"`inputs` must be a list, got {_type_name(inputs)}")
        return [_input_text(item, index) for index, item in enumerate(inputs)]
    return _strings(fields.required("texts"), "texts")


def _input_text(item: Any, index: int) -> str:
    """One v2 ``inputs`` entry: a single text content (images are not embedded here)."""
    where = f"inputs[{index}]"
    content = Fields(item, ("content",), where).required("content")
    if not isinstance(content, list) or len(content) != 1:
        raise BodyError(f"`{where}.content` must hold exactly one text")
    part = Fields(content[0], ("type", "text"), f"{where}.content[0]")
    if part.data.get("type") != "text" or not isinstance(part.data.get("text"), str):
        raise BodyError(f"`{where}.content[0]` must be a text (images are not supported)")
    text: str = part.data["text"]
    return text


def _types(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise BodyError(f"`embedding_types` must be a list of strings, got {_type_name(value)}")
    known = ", ".join(f'"{name}"' for name in COHERE_TYPES)
    out: list[str] = []
    for each in value:
        if each not in COHERE_TYPES:
            raise BodyError(f"`embedding_types` must hold some of {known}, got {each!r}")
        if each not in out:
            out.append(each)
    return tuple(out)


def cohere_content(req: CohereRequest, typed: TypedEmbeddings, tokens: int) -> dict[str, Any]:
    """The answer's JSON (arrays stay numpy: orjson writes them)."""
    meta = {
        "api_version": {"version": str(req.version)},
        "billed_units": {"input_tokens": tokens},
    }
    floats = typed.get(EmbeddingType.FLOAT)
    if not req.types:  # v1 without embedding_types
        return {
            "response_type": "embeddings_floats",
            "id": str(uuid.uuid4()),
            "embeddings": floats,
            "texts": req.texts,
            "meta": meta,
        }
    embeddings: dict[str, Any] = {}
    for name in req.types:
        if name == "base64":
            assert floats is not None
            embeddings[name] = rows_base64(floats)
        else:
            embeddings[name] = typed[EmbeddingType(name)]
    return {
        "response_type": "embeddings_by_type",
        "id": str(uuid.uuid4()),
        "embeddings": embeddings,
        "texts": req.texts,
        "meta": meta,
    }
