"""Every check a request meets before its inputs are queued, in one place.

HTTP, gRPC and the in-process API call these (through ``handlers``, ``encoding`` and
``infer``), so a bad request is refused with the same error and text whichever way it
came in. The checks are TEI's: the route must fit the model kind, a batch must be neither
empty nor larger than ``--max-client-batch-size``, inputs must be non-empty and within the
character and token limits, and a score must be a number.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from tei_ort.errors import BackendError, BatchSizeError, EmptyError, ModelTypeError, ValidationError
from tei_ort.model.info import Head, ModelInfo, ModelKind
from tei_ort.model.late_config import LateFormat
from tei_ort.serving.late_chunking import Chunking
from tei_ort.serving.postprocess import Mode, OutputSpec

#: TEI refuses (or, truncating, cuts) inputs over max_input_length x this many characters
MAX_CHAR_MULTIPLIER = 250


# -- the request as a whole -------------------------------------------------------------------


def check_batch(size: int, limit: int, what: str = "inputs") -> None:
    """A batch request must carry at least one input and at most ``limit``."""
    if size == 0:
        raise EmptyError(f"`{what}` cannot be empty")
    if size > limit:
        raise BatchSizeError(f"batch size {size} > maximum allowed batch size {limit}")


def tokenize_token_limit(max_input_length: int) -> int:
    """The tokens one tokenize request may answer with, all inputs together: as many as
    one input may have characters. TEI has no such bound; without it a 2 MB body of long
    texts asks for an answer of tens of megabytes."""
    return max_input_length * MAX_CHAR_MULTIPLIER


def check_tokenize_count(count: int, limit: int) -> None:
    if count > limit:
        raise ValidationError(
            f"Input validation error: a tokenize request may return at most {limit} tokens "
            f"(max_input_length x {MAX_CHAR_MULTIPLIER}), all inputs together. Given: {count}"
        )


def check_pair_count(count: int) -> None:
    """A gRPC PredictPair input is one text or a pair of texts (TEI's text has no prefix)."""
    if count not in (1, 2):
        raise ValidationError(f"`inputs` must have a single or two elements. Given: {count}")


# -- the route against the model kind -------------------------------------------------------


def is_splade(info: ModelInfo) -> bool:
    return info.head is Head.SPLADE


def is_classifier(info: ModelInfo) -> bool:
    return info.kind in (ModelKind.CLASSIFIER, ModelKind.RERANKER)


def check_embed_route(info: ModelInfo, spec: OutputSpec, embedding_size: int | None) -> None:
    """Refuse what this model cannot answer for an embedding route, in TEI's order: the
    SPLADE checks of each route, ``dimensions == 0``, the model kind, then the size."""
    splade = is_splade(info)
    late = info.late_interaction
    bge_m3 = late is not None and late.format is LateFormat.BGE_M3
    if spec.mode is Mode.SPARSE and not (splade or bge_m3):
        raise ModelTypeError("Backend error: Model is not an embedding model with SPLADE pooling")
    if spec.mode is Mode.TOKENS and splade:
        raise ModelTypeError("Backend error: `embed_all` is not available for SPLADE models")
    if spec.mode is Mode.POOLED and splade and spec.normalize:
        raise ModelTypeError("Backend error: `normalize` is not available for SPLADE models")
    if spec.dimensions is not None and spec.dimensions < 1:
        raise ValidationError("Input validation error: `dimensions` should be positive")
    if is_classifier(info):
        raise ModelTypeError("Backend error: Model is not an embedding model")
    if spec.dimensions is not None and embedding_size is not None:
        check_dimensions_fit(spec.dimensions, embedding_size)


def check_late_request(info: ModelInfo, spec: OutputSpec) -> None:
    """tei-ort's late-interaction requests, after every check of TEI's (prompt included)."""
    late = info.late_interaction
    bge_m3 = late is not None and late.format is LateFormat.BGE_M3
    if spec.mode is Mode.HYBRID and not bge_m3:  # a field of the request: 422
        raise ValidationError("Input validation error: `outputs` needs a BGE-M3 model")
    if spec.query and late is None:
        raise ValidationError(
            "Input validation error: `input_type` is only for late-interaction "
            "(ColBERT, BGE-M3) models"
        )


def check_dimensions_fit(dimensions: int, embedding_size: int) -> None:
    """``dimensions`` may be at most the vector's length (TEI checks it after inference;
    tei-ort knows the length before, and checks again after when it did not)."""
    if dimensions > embedding_size:
        raise ValidationError(
            "Input validation error: `dimensions` should be smaller than the maximum "
            "embedding dimension."
        )


def check_predict_route(info: ModelInfo) -> None:
    if not is_classifier(info):
        raise ModelTypeError("Backend error: Model is not a classifier model")


def check_rerank_route(info: ModelInfo) -> None:
    """HTTP /rerank: TEI wraps the text in a backend error ("Backend error: ...")."""
    if info.kind is not ModelKind.RERANKER:
        raise ModelTypeError("Backend error: model is not a re-ranker model")


def check_grpc_rerank_route(info: ModelInfo) -> None:
    """gRPC Rerank: TEI sends a bare status text, and names the classifier kind when the
    model is an embedding model."""
    if info.kind is ModelKind.CLASSIFIER:
        raise ModelTypeError("model is not a re-ranker model")
    if info.kind is ModelKind.EMBEDDING:
        raise ModelTypeError("model is not a classifier model")


def rust_debug_list(names: Sequence[str]) -> str:
    """A list of names as Rust's ``{:?}`` writes it: ``["a", "b"]``."""
    quoted = (json.dumps(name, ensure_ascii=False) for name in names)
    return "[" + ", ".join(quoted) + "]"


def prompt_text(
    prompts: Mapping[str, str], prompt_name: str | None, default: str | None
) -> str | None:
    """The prompt ``prompt_name`` names; None means the default prompt.

    TEI reports a request's ``prompt_name`` under the flag's name, ``default-prompt-name``.
    """
    if prompt_name is None:
        return default
    if not prompts:
        raise ValidationError(
            f"Input validation error: `default-prompt-name` is set to `{prompt_name}` but no "
            f"prompts were found in the Sentence Transformers configuration"
        )
    if prompt_name not in prompts:
        raise ValidationError(
            f"Input validation error: `default-prompt-name` is set to `{prompt_name}` but it "
            f"was not found in the Sentence Transformers prompts. Available prompts: "
            f"{rust_debug_list(sorted(prompts))}"
        )
    return prompts[prompt_name]


# -- each input -----------------------------------------------------------------------------


def check_not_empty(item: str | Sequence[int] | tuple[str, str]) -> None:
    """An input must have something in it (a pair: at least one of its texts)."""
    empty = not item[0] and not item[1] if isinstance(item, tuple) else not item
    if empty:
        raise EmptyError("Input validation error: `inputs` cannot be empty")


def check_ids_not_empty(ids: Sequence[int]) -> None:
    if not ids:
        raise EmptyError("Input validation error: `input_ids` cannot be empty")


def over_char_limit(chars: int, limit: int, truncate: bool) -> bool:
    """Whether an input must be cut to ``limit`` characters; refused when not truncating."""
    if chars <= limit:
        return False
    if not truncate:
        raise ValidationError(
            f"Input validation error: `inputs` must have less than {limit} characters. "
            f"Given: {chars}"
        )
    return True


def check_token_ids(ids: Sequence[int], vocab_size: int) -> None:
    if max(ids) >= vocab_size:
        raise ValidationError(
            f"Input validation error: token id {max(ids)} is out of the vocabulary "
            f"(size {vocab_size})"
        )


def check_token_count(count: int, max_input_length: int) -> None:
    """An input still over ``max_input_length`` tokens after (or without) truncation."""
    if count > max_input_length:
        raise ValidationError(
            "Input validation error: `inputs` must have less than "
            f"{max_input_length} tokens. Given: {count}"
        )


def check_template_pair(item: object) -> tuple[str, str]:
    """Prompt-template re-rankers score (query, document) pairs with both texts present."""
    if not isinstance(item, tuple):
        raise ValidationError(
            "Input validation error: this re-ranker scores (query, document) pairs, "
            "not single texts"
        )
    if not item[0] or not item[1]:
        raise EmptyError("Input validation error: `inputs` cannot be empty")
    return item


# -- answers --------------------------------------------------------------------------------


def check_scores(scores: NDArray[np.float32]) -> None:
    """A NaN score cannot be ranked or labelled: the request fails, as in TEI."""
    if np.isnan(scores).any():
        raise BackendError("score is NaN")


def check_chunked_inputs(
    info: ModelInfo, inputs: Sequence[object], chunking: Chunking
) -> list[str]:
    """Late chunking's inputs: texts, on a single-vector embedding model; one span list per
    input when spans are given."""
    if info.late_interaction is not None or info.head is not Head.BASE:
        raise ModelTypeError(
            "Backend error: `chunks` needs a single-vector embedding model (not SPLADE, "
            "ColBERT or BGE-M3's multi-vector heads)"
        )
    texts = []
    for item in inputs:
        if not isinstance(item, str):
            raise ValidationError("Input validation error: `chunks` needs text inputs")
        check_not_empty(item)
        texts.append(item)
    if chunking.spans is not None and len(chunking.spans) != len(texts):
        raise ValidationError(
            f"Input validation error: `chunks` has {len(chunking.spans)} span lists for "
            f"{len(texts)} inputs"
        )
    return texts
