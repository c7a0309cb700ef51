"""The Qwen3-Reranker prompt template and how its pairs tokenize."""

from __future__ import annotations

import numpy as np
import pytest

from tei_ort.errors import ModelError, UnsupportedModelError
from tei_ort.model.rerank_templates import (
    QWEN3,
    QWEN3_RERANK_PREFIX,
    QWEN3_RERANK_SUFFIX,
    encode_rerank_pairs,
    is_qwen3_reranker,
)
from tei_ort.model.tokenization import Tokenizer
from tests.support.qwen3_reranker import model_card_prompt
from tests.support.tiny_decoders import write_bpe_tokenizer


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    root = tmp_path_factory.mktemp("bpe")
    write_bpe_tokenizer(root)
    return Tokenizer.from_dir(root)


def test_pieces_tokenize_as_the_whole_prompt(tokenizer: Tokenizer) -> None:
    pairs = [("what is the capital of France?", "Paris."), ("yes", "no")]
    ours = encode_rerank_pairs(QWEN3, tokenizer, pairs)
    whole = tokenizer.encode_batch(
        [model_card_prompt(q, d) for q, d in pairs], add_special_tokens=False
    )
    for a, b in zip(ours, whole, strict=True):
        np.testing.assert_array_equal(a.input_ids, b.input_ids)
    custom = encode_rerank_pairs(QWEN3, tokenizer, pairs, instruction="Find code")
    expected = tokenizer.encode_batch(
        [model_card_prompt(q, d, "Find code") for q, d in pairs], add_special_tokens=False
    )
    for a, b in zip(custom, expected, strict=True):
        np.testing.assert_array_equal(a.input_ids, b.input_ids)
        assert not a.token_type_ids.any()


def test_truncation_cuts_the_body_and_keeps_the_template(tokenizer: Tokenizer) -> None:
    prefix, suffix = tokenizer.encode_batch(
        [QWEN3_RERANK_PREFIX, QWEN3_RERANK_SUFFIX], add_special_tokens=False
    )
    long_doc = "the quick brown fox jumps over the lazy dog " * 40
    (full,) = encode_rerank_pairs(QWEN3, tokenizer, [("q", long_doc)])
    (cut,) = encode_rerank_pairs(QWEN3, tokenizer, [("q", long_doc)], max_length=120)
    assert len(full) > 120 == len(cut)
    np.testing.assert_array_equal(cut.input_ids[: len(prefix)], prefix.input_ids)
    np.testing.assert_array_equal(cut.input_ids[-len(suffix) :], suffix.input_ids)
    # what is cut is the document's end, right before the suffix
    body = len(prefix) + (120 - len(prefix) - len(suffix))
    np.testing.assert_array_equal(cut.input_ids[:body], full.input_ids[:body])
    with pytest.raises(ModelError, match="no room"):
        encode_rerank_pairs(QWEN3, tokenizer, [("q", "d")], max_length=10)


def test_unknown_template(tokenizer: Tokenizer) -> None:
    with pytest.raises(UnsupportedModelError, match="'bge'"):
        encode_rerank_pairs("bge", tokenizer, [("q", "d")])


@pytest.mark.parametrize(
    ("architectures", "config", "names", "expected"),
    [
        (["Qwen3ForCausalLM"], {}, ["Qwen/Qwen3-Reranker-0.6B", "x"], True),
        (["Qwen3ForCausalLM"], {"_name_or_path": "/m/qwen3-reranker-4b"}, ["m", "m"], True),
        (["Qwen3ForCausalLM"], {}, ["Qwen/Qwen3-Embedding-0.6B", "x"], False),
        (["Qwen3ForSequenceClassification"], {}, ["Qwen3-Reranker-0.6B-seq-cls", "x"], False),
    ],
)
def test_recognition_rule(
    architectures: list[str], config: dict[str, object], names: list[str], expected: bool
) -> None:
    assert is_qwen3_reranker(architectures, config, names) is expected
