"""The checks every front end shares (serving/validation.py), as pure functions."""

from __future__ import annotations

import numpy as np
import pytest

from tei_ort.errors import BackendError, BatchSizeError, EmptyError, ValidationError
from tei_ort.serving import validation


def test_batch_limits() -> None:
    validation.check_batch(1, 32)
    validation.check_batch(32, 32)
    with pytest.raises(EmptyError, match="`texts` cannot be empty"):
        validation.check_batch(0, 32, "texts")
    with pytest.raises(BatchSizeError, match="batch size 33 > maximum allowed batch size 32"):
        validation.check_batch(33, 32)


def test_inputs() -> None:
    validation.check_not_empty("a")
    validation.check_not_empty(("", "b"))
    for empty in ("", ("", ""), []):
        with pytest.raises(EmptyError):
            validation.check_not_empty(empty)
    assert not validation.over_char_limit(10, 10, truncate=False)
    assert validation.over_char_limit(11, 10, truncate=True)
    with pytest.raises(ValidationError, match=r"less than 10 characters\. Given: 11"):
        validation.over_char_limit(11, 10, truncate=False)
    with pytest.raises(ValidationError, match=r"less than 8 tokens\. Given: 9"):
        validation.check_token_count(9, 8)
    with pytest.raises(ValidationError, match="out of the vocabulary"):
        validation.check_token_ids([1, 100], 100)


def test_prompts() -> None:
    prompts = {"query": "q: "}
    assert validation.prompt_text(prompts, None, "d: ") == "d: "
    assert validation.prompt_text(prompts, "query", None) == "q: "
    with pytest.raises(ValidationError, match="Available prompts"):
        validation.prompt_text(prompts, "doc", None)
    with pytest.raises(ValidationError, match="no prompts were found"):
        validation.prompt_text({}, "doc", None)


def test_scores() -> None:
    validation.check_scores(np.array([0.1, 0.9], dtype=np.float32))
    with pytest.raises(BackendError, match="score is NaN"):
        validation.check_scores(np.array([0.1, np.nan], dtype=np.float32))


def test_a_tokenizer_failure_is_teis_tokenizer_error() -> None:
    """TEI: ``TextEmbeddingsError::Tokenizer`` writes ``tokenizer error {0}``; 422."""
    from tei_ort.errors import TokenizerError
    from tei_ort.serving.phases import failure_label, tokenization_errors

    with pytest.raises(TokenizerError) as exc, tokenization_errors():
        raise ValueError("Truncation error: Second sequence not provided")
    assert exc.value.message == "tokenizer error Truncation error: Second sequence not provided"
    assert exc.value.status_code == 422 and exc.value.error_type == "Tokenizer"
    assert failure_label(exc.value) == "tokenization"
