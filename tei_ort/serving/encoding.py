"""Tokenizing a request's inputs, as TEI does, after the checks of ``validation``.

One ``InputEncoder`` per served model; the server (``infer.Infer``) and the in-process API
(``api.Model``) both go through it, so both accept, refuse and tokenize the same inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from tei_ort.errors import ModelError, RequestError, TeiOrtError, ValidationError
from tei_ort.model.info import ModelInfo
from tei_ort.model.late_heads import LateHeads
from tei_ort.model.rerank_templates import encode_rerank_pairs
from tei_ort.model.tokenization import Direction, Encoded, Tokenizer, apply_prompt
from tei_ort.serving import validation
from tei_ort.serving.postprocess import OutputSpec
from tei_ort.serving.validation import MAX_CHAR_MULTIPLIER

__all__ = ["MAX_CHAR_MULTIPLIER", "InputEncoder", "Item"]

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
        late: LateHeads | None = None,
    ) -> None:
        self.info = info
        self.late = late
        self.tokenizer = tokenizer
        self.max_input_length = max_input_length
        self.default_prompt = default_prompt
        self._on_length = on_length  # te_request_input_length

    @property
    def is_splade(self) -> bool:
        return validation.is_splade(self.info)

    @property
    def is_classifier(self) -> bool:
        return validation.is_classifier(self.info)

    @property
    def embedding_size(self) -> int | None:
        """The pooled vector length (after Dense layers), when known."""
        if self.is_splade:
            return int(self.info.config.get("vocab_size") or self.tokenizer.vocab_size)
        if self.info.dense_layers:
            return self.info.dense_layers[-1].out_features
        return self.info.hidden_size or None

    def check_embed(self, spec: OutputSpec) -> None:
        validation.check_embed_route(self.info, spec, self.embedding_size)

    def check_late(self, spec: OutputSpec) -> None:
        validation.check_late_request(self.info, spec)

    def check_predict(self) -> None:
        validation.check_predict_route(self.info)

    def prompt(self, prompt_name: str | None) -> str | None:
        """The prompt text for ``prompt_name``; None means the default prompt."""
        return validation.prompt_text(self.info.prompts, prompt_name, self.default_prompt)

    def encode(
        self,
        items: Sequence[Item],
        truncate: bool,
        direction: Direction,
        prompt: str | None,
        instruction: str | None = None,
        *,
        query: bool = False,
    ) -> list[Encoded]:
        """Validate and tokenize one request's inputs, in order (one call per request).

        ``query``: a ColBERT model encodes the inputs as queries, else as documents."""
        if self.info.rerank_template is not None:
            return self._encode_template(items, truncate, direction, instruction)
        colbert = self.late if self.late is not None and self.late.has_markers else None
        limit_all = self.max_input_length
        if colbert is not None:
            limit_all = colbert.length_limit(query, self.max_input_length)
        # a ColBERT marker takes one place after the first token
        max_length = limit_all - 1 if colbert is not None else limit_all
        limit = max_length * MAX_CHAR_MULTIPLIER
        texts: list[str | tuple[str, str]] = []
        text_rows: list[int] = []
        out: list[Encoded | None] = [None] * len(items)
        for row, item in enumerate(items):
            validation.check_not_empty(item)
            if isinstance(item, str):
                if validation.over_char_limit(len(item), limit, truncate):
                    item = item[:limit]
                texts.append(apply_prompt(item, prompt))
                text_rows.append(row)
            elif isinstance(item, tuple):
                first, second = item
                if validation.over_char_limit(len(first) + len(second), limit, truncate):
                    first, second = first[: limit // 2], second[: limit // 2]
                texts.append((first, second))
                text_rows.append(row)
            else:
                validation.check_token_ids(item, self.tokenizer.vocab_size)
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
        if colbert is not None:
            result = [colbert.mark(encoding, query=query, length=limit_all) for encoding in result]
            for encoding in result:
                validation.check_token_count(len(encoding), limit_all)
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
        pairs = [validation.check_template_pair(item) for item in items]
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
            validation.check_token_count(len(encoding), self.max_input_length)
            self._on_length(len(encoding))
        return encoded
