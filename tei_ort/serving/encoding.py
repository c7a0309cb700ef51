"""Validation and tokenization of inputs, as TEI does them.

One ``InputEncoder`` per served model; the server (``infer.Infer``) and the in-process API
(``api.Model``) both go through it, so both accept, refuse and tokenize the same inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from tei_ort.errors import (
    EmptyError,
    ModelError,
    ModelTypeError,
    RequestError,
    TeiOrtError,
    ValidationError,
)
from tei_ort.model.info import Head, ModelInfo, ModelKind
from tei_ort.model.rerank_templates import encode_rerank_pairs
from tei_ort.model.tokenization import Direction, Encoded, Tokenizer, apply_prompt
from tei_ort.serving.postprocess import Mode, OutputSpec

#: TEI refuses (or, truncating, cuts) inputs over max_input_length x this many characters
MAX_CHAR_MULTIPLIER = 250

#: one input: a text, token ids, or a (text, text) pair for classifiers and re-rankers
Item = str | list[int] | tuple[str, str]


def _ignore(_: int) -> None:
    pass


class InputEncoder:
    def __init__(
        self,
        info: ModelInfo,
        tokenizer: Tokenizer,
        max_input_length: int,
        *,
        default_prompt: str | None = None,
        on_length: Callable[[int], None] = _ignore,
    ) -> None:
        self.info = info
        self.tokenizer = tokenizer
        self.max_input_length = max_input_length
        self.default_prompt = default_prompt
        self._on_length = on_length  # te_request_input_length

    @property
    def is_splade(self) -> bool:
        return self.info.head is Head.SPLADE

    @property
    def is_classifier(self) -> bool:
        return self.info.kind in (ModelKind.CLASSIFIER, ModelKind.RERANKER)

    @property
    def embedding_size(self) -> int | None:
        """The pooled vector length (after Dense layers), when known."""
        if self.is_splade:
            return int(self.info.config.get("vocab_size") or self.tokenizer.vocab_size)
        if self.info.dense_layers:
            return self.info.dense_layers[-1].out_features
        return self.info.hidden_size or None

    def check_embed(self, spec: OutputSpec) -> None:
        """Refuse what this model cannot answer for an embedding route, as TEI does."""
        if self.is_classifier:
            raise ModelTypeError("Backend error: Inference error: Model is not an embedding model")
        if spec.mode is Mode.SPARSE and not self.is_splade:
            raise ModelTypeError(
                "Backend error: Inference error: "
                "Model is not an embedding model with SPLADE pooling"
            )
        if spec.mode is Mode.TOKENS and self.is_splade:
            raise ModelTypeError(
                "Backend error: Inference error: `embed_all` is not available for SPLADE models"
            )
        if spec.mode is Mode.POOLED and self.is_splade and spec.normalize:
            raise ModelTypeError(
                "Backend error: Inference error: `normalize` is not available for SPLADE models"
            )
        if spec.dimensions is not None:
            size = self.embedding_size
            if spec.dimensions < 1 or (size is not None and spec.dimensions > size):
                raise ValidationError(
                    f"Input validation error: `dimensions` must be between 1 and {size}, "
                    f"got {spec.dimensions}"
                )

    def check_predict(self) -> None:
        if not self.is_classifier:
            raise ModelTypeError("Backend error: Inference error: Model is not a classifier model")

    def prompt(self, prompt_name: str | None) -> str | None:
        """The prompt text for ``prompt_name``; None means the default prompt."""
        if prompt_name is None:
            return self.default_prompt
        if not self.info.prompts:
            raise ValidationError(
                f"Input validation error: `prompt_name` is set to `{prompt_name}` but no prompts "
                f"were found in the Sentence Transformers configuration"
            )
        if prompt_name not in self.info.prompts:
            raise ValidationError(
                f"Input validation error: `prompt_name` is set to `{prompt_name}` but it was not "
                f"found in the Sentence Transformers prompts. Available prompts: "
                f"{sorted(self.info.prompts)}"
            )
        return self.info.prompts[prompt_name]

    def encode(
        self,
        items: Sequence[Item],
        truncate: bool,
        direction: Direction,
        prompt: str | None,
        instruction: str | None = None,
    ) -> list[Encoded]:
        """Validate and tokenize one request's inputs, in order (one call per request)."""
        if self.info.rerank_template is not None:
            return self._encode_template(items, truncate, direction, instruction)
        max_length = self.max_input_length
        limit = max_length * MAX_CHAR_MULTIPLIER
        texts: list[str | tuple[str, str]] = []
        text_rows: list[int] = []
        out: list[Encoded | None] = [None] * len(items)
        for row, item in enumerate(items):
            if isinstance(item, str):
                if not item:
                    raise EmptyError("Input validation error: `inputs` cannot be empty")
                if _over_char_limit(len(item), limit, truncate):
                    item = item[:limit]
                texts.append(apply_prompt(item, prompt))
                text_rows.append(row)
            elif isinstance(item, tuple):
                first, second = item
                if not first and not second:
                    raise EmptyError("Input validation error: `inputs` cannot be empty")
                if _over_char_limit(len(first) + len(second), limit, truncate):
                    first, second = first[: limit // 2], second[: limit // 2]
                texts.append((first, second))
                text_rows.append(row)
            else:
                if not item:
                    raise EmptyError("Input validation error: `inputs` cannot be empty")
                if max(item) >= self.tokenizer.vocab_size:
                    raise ValidationError(
                        f"Input validation error: token id {max(item)} is out of the vocabulary "
                        f"(size {self.tokenizer.vocab_size})"
                    )
                if prompt:
                    text = self.tokenizer.decode(item, skip_special_tokens=True)
                    texts.append(apply_prompt(text, prompt))
                    text_rows.append(row)
                else:
                    ids = np.asarray(item, dtype=np.int64)
                    if ids.shape[0] > max_length and truncate:
                        ids = ids[:max_length] if direction == "right" else ids[-max_length:]
                    out[row] = Encoded(ids, np.zeros_like(ids))
        if texts:
            encodings = self.tokenizer.encode_batch(
                texts, max_length=max_length if truncate else None, direction=direction
            )
            for row, encoding in zip(text_rows, encodings, strict=True):
                out[row] = encoding
        result = [encoding for encoding in out if encoding is not None]
        assert len(result) == len(items)  # every row was encoded, ids or text
        return self._checked(result)

    def _encode_template(
        self,
        items: Sequence[Item],
        truncate: bool,
        direction: Direction,
        instruction: str | None,
    ) -> list[Encoded]:
        """(query, document) pairs in a prompt-template re-ranker's template."""
        assert self.info.rerank_template is not None
        pairs: list[tuple[str, str]] = []
        for item in items:
            if not isinstance(item, tuple):
                raise ValidationError(
                    "Input validation error: this re-ranker scores (query, document) pairs, "
                    "not single texts"
                )
            if not item[0] or not item[1]:
                raise EmptyError("Input validation error: `inputs` cannot be empty")
            pairs.append(item)
        max_length = self.max_input_length
        try:
            encoded = encode_rerank_pairs(
                self.info.rerank_template,
                self.tokenizer,
                pairs,
                instruction=instruction,
                max_length=max_length if truncate else None,
                direction=direction,
            )
        except (TeiOrtError, ModelError) as exc:
            if isinstance(exc, RequestError):
                raise
            raise ValidationError(f"Input validation error: {exc}") from exc
        return self._checked(encoded)

    def _checked(self, encoded: list[Encoded]) -> list[Encoded]:
        """Refuse an input still over ``max_input_length`` tokens; record every length."""
        for encoding in encoded:
            if len(encoding) > self.max_input_length:
                raise ValidationError(
                    "Input validation error: `inputs` must have less than "
                    f"{self.max_input_length} tokens. Given: {len(encoding)}"
                )
            self._on_length(len(encoding))
        return encoded


def _over_char_limit(chars: int, limit: int, truncate: bool) -> bool:
    """Whether an input must be cut to ``limit`` characters; refused when not truncating."""
    if chars <= limit:
        return False
    if not truncate:
        raise ValidationError(
            f"Input validation error: `inputs` must have less than {limit} characters. "
            f"Given: {chars}"
        )
    return True
