"""The tokenizer wrapper on the real MiniLM tokenizer (whose file fixes padding at 128)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from tei_ort.errors import ModelError
from tei_ort.model.tokenization import Tokenizer, apply_prompt


def test_file_padding_and_truncation_are_cleared(minilm_dir: Path, tokenizer: Tokenizer) -> None:
    assert json.loads((minilm_dir / "tokenizer.json").read_text())["padding"] is not None
    (short,) = tokenizer.encode_batch(["hello"])
    assert short.input_ids.tolist() == [101, 7592, 102]  # not padded to 128
    (long,) = tokenizer.encode_batch(["word " * 300])
    assert len(long) == 302  # not truncated at 128


def test_special_tokens(tokenizer: Tokenizer) -> None:
    assert tokenizer.pad_token_id == 0
    assert tokenizer.vocab_size == 30522


def test_truncation_right_and_left(tokenizer: Tokenizer) -> None:
    text = "one two three four five six"
    (right,) = tokenizer.encode_batch([text], max_length=5, direction="right")
    (left,) = tokenizer.encode_batch([text], max_length=5, direction="left")
    assert tokenizer.decode(right.input_ids.tolist()) == "one two three"
    assert tokenizer.decode(left.input_ids.tolist()) == "four five six"
    (untouched,) = tokenizer.encode_batch([text])  # the thread's copy resets its truncation
    assert len(untouched) == 8


def test_pairs_get_type_ids_and_mixed_batches(tokenizer: Tokenizer) -> None:
    single, pair = tokenizer.encode_batch(["a b", ("query", "a document")])
    assert single.token_type_ids.tolist() == [0, 0, 0, 0]
    assert pair.token_type_ids.tolist() == [0, 0, 0, 1, 1, 1]
    assert pair.input_ids[0] == 101 and pair.input_ids[-1] == 102


def test_add_special_tokens_off(tokenizer: Tokenizer) -> None:
    (encoded,) = tokenizer.encode_batch(["hello"], add_special_tokens=False)
    assert encoded.input_ids.tolist() == [7592]


def test_tokens_have_byte_offsets_and_null_for_special(tokenizer: Tokenizer) -> None:
    (tokens,) = tokenizer.tokens(["héllo world"])
    assert [(t.id, t.text, t.special, t.start, t.stop) for t in tokens] == [
        (101, "[CLS]", True, None, None),
        (7592, "héllo", False, 0, 6),  # é is two bytes
        (2088, "world", False, 7, 12),
        (102, "[SEP]", True, None, None),
    ]


def test_decode(tokenizer: Tokenizer) -> None:
    assert tokenizer.decode([101, 7592, 102]) == "hello"
    assert tokenizer.decode([101, 7592, 102], skip_special_tokens=False) == "[CLS] hello [SEP]"
    assert tokenizer.decode_batch([[7592], [2088]]) == ["hello", "world"]


def test_apply_prompt() -> None:
    assert apply_prompt("x", "query: ") == "query: x"
    assert apply_prompt("x", None) == "x"


def test_threads_keep_their_own_truncation(tokenizer: Tokenizer) -> None:
    text = "word " * 50
    errors: list[str] = []

    def work(max_length: int | None) -> None:
        for _ in range(50):
            (e,) = tokenizer.encode_batch([text], max_length=max_length)
            expected = 52 if max_length is None else max_length
            if len(e) != expected:
                errors.append(f"{max_length}: {len(e)}")

    threads = [threading.Thread(target=work, args=(m,)) for m in (None, 8, 16, None)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_missing_tokenizer_json(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"tokenizer\.json"):
        Tokenizer.from_dir(tmp_path)


def test_unreadable_tokenizer_json(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(ModelError, match="cannot read"):
        Tokenizer.from_dir(tmp_path)
