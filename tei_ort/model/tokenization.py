"""The model's tokenizer: batch encoding with truncation, pairs, offsets, decoding.

Wraps a ``tokenizers.Tokenizer`` read from ``tokenizer.json``. The file's own padding and
truncation (some fix both at 128) are cleared: the batcher pads, and truncation is decided
per request (``truncate``, ``truncation_direction``, the model's ``max_input_length``).

``tokenizers`` releases the GIL while it encodes, so calls run in a thread pool. Changing
truncation mutates the Rust object, so each thread keeps its own copy (as TEI's workers do).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import tokenizers
from numpy.typing import NDArray

from tei_ort.errors import ModelError, TokenizerError

Direction = Literal["right", "left"]
#: one input: a text, a (text, text) pair, or token ids that already hold special tokens
TextInput = str | tuple[str, str]

# tokens that commonly pad, in the order we look for them when tokenizer.json names none
_PAD_CANDIDATES = ("[PAD]", "<pad>", "<|pad|>", "<|endoftext|>", "</s>")


@dataclass(frozen=True)
class Encoded:
    """One tokenized input, ready for the queue."""

    input_ids: NDArray[np.int64]  # (T,)
    token_type_ids: NDArray[np.int64]  # (T,)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


@dataclass(frozen=True)
class OffsetEncoding:
    """A text's encoding with each token's [start, end) characters and special flag."""

    encoded: Encoded
    offsets: list[tuple[int, int]]
    special: list[int]


@dataclass(frozen=True)
class Token:
    """One token as /tokenize answers it; ``start``/``stop`` are UTF-8 byte offsets."""

    id: int
    text: str
    special: bool
    start: int | None
    stop: int | None


class Tokenizer:
    """A model's fast tokenizer with padding and truncation under our control."""

    def __init__(self, tokenizer: tokenizers.Tokenizer, *, pad_token: str | None = None) -> None:
        self.pad_token_id = self._find_pad_id(tokenizer, pad_token)  # before padding is cleared
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self._json = tokenizer.to_str()
        self._local = threading.local()
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        self.special_tokens: dict[str, str] = {}  # special_tokens_map.json: name -> token

    @classmethod
    def from_dir(cls, path: Path) -> Tokenizer:
        """Read ``tokenizer.json`` (and ``special_tokens_map.json`` for the pad token)."""
        file = Path(path) / "tokenizer.json"
        if not file.is_file():
            raise ModelError(f"{file} not found: tei-ort needs a fast tokenizer (tokenizer.json)")
        try:
            tokenizer = tokenizers.Tokenizer.from_file(str(file))
        except Exception as exc:  # the Rust side raises plain Exception
            raise ModelError(f"cannot read {file}: {exc}") from exc
        made = cls(tokenizer, pad_token=_pad_token_from_files(Path(path)))
        made.special_tokens = _special_tokens_from_files(Path(path))
        return made

    def token_id(self, token: str) -> int | None:
        """The id of ``token`` in the vocabulary (added tokens included), None if absent."""
        found = self._for_thread(None).token_to_id(token)
        return None if found is None else int(found)

    def special_id(self, name: str) -> int | None:
        """The id of a named special token (``cls_token``, ``mask_token``...), as
        special_tokens_map.json / tokenizer_config.json name it; None when it has none."""
        token = self.special_tokens.get(name)
        return None if token is None else self.token_id(token)

    @staticmethod
    def _find_pad_id(tokenizer: tokenizers.Tokenizer, pad_token: str | None) -> int:
        padding = json.loads(tokenizer.to_str()).get("padding") or {}
        if isinstance(padding.get("pad_id"), int):
            return int(padding["pad_id"])
        for token in (pad_token, *_PAD_CANDIDATES):
            if token is not None and (token_id := tokenizer.token_to_id(token)) is not None:
                return int(token_id)
        return 0  # padded positions are masked out; any valid id works

    # -- per-thread copies ------------------------------------------------------------------

    def _for_thread(self, truncation: tuple[int, Direction] | None) -> tokenizers.Tokenizer:
        local = self._local
        tokenizer: tokenizers.Tokenizer | None = getattr(local, "tokenizer", None)
        if tokenizer is None:
            tokenizer = tokenizers.Tokenizer.from_str(self._json)
            tokenizer.no_padding()
            tokenizer.no_truncation()
            local.tokenizer = tokenizer
            local.truncation = None
        if local.truncation != truncation:
            if truncation is None:
                tokenizer.no_truncation()
            else:
                max_length, direction = truncation
                tokenizer.enable_truncation(
                    max_length, strategy="longest_first", direction=direction
                )
            local.truncation = truncation
        return tokenizer

    # -- encoding ------------------------------------------------------------------------

    def encode_batch(
        self,
        inputs: Sequence[TextInput],
        *,
        add_special_tokens: bool = True,
        max_length: int | None = None,
        direction: Direction = "right",
    ) -> list[Encoded]:
        """Encode texts and pairs in one call; ``max_length`` turns truncation on."""
        truncation = None if max_length is None else (max_length, direction)
        tokenizer = self._for_thread(truncation)
        try:
            encodings = tokenizer.encode_batch(list(inputs), add_special_tokens=add_special_tokens)
        except Exception as exc:  # tokenizers raises plain Exception
            raise TokenizerError(f"tokenizer error {exc}") from exc
        return [
            Encoded(
                input_ids=np.asarray(e.ids, dtype=np.int64),
                token_type_ids=np.asarray(e.type_ids, dtype=np.int64),
            )
            for e in encodings
        ]

    def encode_offsets(self, text: str) -> OffsetEncoding:
        """One text, special tokens added, no truncation, with each token's character
        offsets (for late chunking)."""
        try:
            encoding = self._for_thread(None).encode(text)
        except Exception as exc:
            raise TokenizerError(f"tokenizer error {exc}") from exc
        return OffsetEncoding(
            Encoded(
                np.asarray(encoding.ids, dtype=np.int64),
                np.asarray(encoding.type_ids, dtype=np.int64),
            ),
            [(int(a), int(b)) for a, b in encoding.offsets],
            list(encoding.special_tokens_mask),
        )

    def tokens(
        self,
        texts: Sequence[str],
        *,
        add_special_tokens: bool = True,
        check_count: Callable[[int], None] | None = None,
    ) -> list[list[Token]]:
        """/tokenize: every token with its text and UTF-8 byte offsets into its input.

        ``check_count`` sees the number of tokens of all texts before any ``Token`` is made
        (it raises to refuse an answer too big to build)."""
        tokenizer = self._for_thread(None)
        try:
            encodings = tokenizer.encode_batch(list(texts), add_special_tokens=add_special_tokens)
        except Exception as exc:
            raise TokenizerError(f"tokenizer error {exc}") from exc
        if check_count is not None:
            check_count(sum(len(encoding.ids) for encoding in encodings))
        out: list[list[Token]] = []
        for text, encoding in zip(texts, encodings, strict=True):
            byte_at = _char_to_byte_offsets(text)
            row = []
            for token_id, token, (start, stop), special in zip(
                encoding.ids,
                encoding.tokens,
                encoding.offsets,
                encoding.special_tokens_mask,
                strict=True,
            ):
                if special:
                    row.append(Token(token_id, token, True, None, None))
                else:
                    row.append(
                        Token(token_id, text[start:stop], False, byte_at(start), byte_at(stop))
                    )
            out.append(row)
        return out

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        try:
            return str(
                self._for_thread(None).decode(list(ids), skip_special_tokens=skip_special_tokens)
            )
        except Exception as exc:
            raise TokenizerError(f"tokenizer error {exc}") from exc

    def decode_batch(
        self, batch: Sequence[Sequence[int]], *, skip_special_tokens: bool = True
    ) -> list[str]:
        tokenizer = self._for_thread(None)
        try:
            return list(
                tokenizer.decode_batch(
                    [list(ids) for ids in batch], skip_special_tokens=skip_special_tokens
                )
            )
        except Exception as exc:
            raise TokenizerError(f"tokenizer error {exc}") from exc


def apply_prompt(text: str, prompt: str | None) -> str:
    """Prompts are prepended to the text before tokenizing, as sentence-transformers does."""
    return text if not prompt else prompt + text


def _char_to_byte_offsets(text: str) -> _ByteOffsets:
    return _ByteOffsets(text)


class _ByteOffsets:
    """Maps character offsets to UTF-8 byte offsets (identity for ASCII text)."""

    def __init__(self, text: str) -> None:
        self._table: list[int] | None = None
        if not text.isascii():
            table = [0]
            total = 0
            for ch in text:
                total += len(ch.encode("utf-8"))
                table.append(total)
            self._table = table

    def __call__(self, char_offset: int) -> int:
        return char_offset if self._table is None else self._table[char_offset]


def _special_tokens_from_files(path: Path) -> dict[str, str]:
    """``*_token`` names -> token texts, special_tokens_map.json first."""
    found: dict[str, str] = {}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        try:
            data = json.loads((path / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        for key, value in data.items():
            if isinstance(value, dict):
                value = value.get("content")
            if key.endswith("_token") and isinstance(value, str):
                found[key] = value
    return found


def _pad_token_from_files(path: Path) -> str | None:
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        file = path / name
        if not file.is_file():
            continue
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        pad = data.get("pad_token") if isinstance(data, dict) else None
        if isinstance(pad, dict):
            pad = pad.get("content")
        if isinstance(pad, str):
            return pad
    return None
