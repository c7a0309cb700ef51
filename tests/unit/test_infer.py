"""Pieces of the inference path that need no threads: start-up rules and phases
(permits: test_permits.py)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from tei_ort.errors import ConfigurationError, ValidationError
from tei_ort.serving.phases import INLINE_TOKENIZE_CHARS, failure_label, mark_phase, tokenize_inline
from tei_ort.serving.startup import effective_max_input_length, resolve_default_prompt
from tei_ort.settings import Settings

pytestmark = pytest.mark.anyio


def _info(make_model: Any, **changes: Any) -> Any:
    return replace(make_model().info, **changes)


def test_max_input_length_vs_max_batch_tokens(make_model: Any) -> None:
    info = _info(make_model, max_input_length=512)
    assert effective_max_input_length(Settings(max_batch_tokens=1024), info) == 512
    assert effective_max_input_length(Settings(max_batch_tokens=100), info) == 100
    with pytest.raises(ConfigurationError, match="--auto-truncate"):
        effective_max_input_length(Settings(max_batch_tokens=100, auto_truncate=False), info)


def test_default_prompt(make_model: Any) -> None:
    info = _info(make_model, prompts={"query": "query: "})
    assert resolve_default_prompt(Settings(), info) is None
    assert resolve_default_prompt(Settings(default_prompt="p: "), info) == "p: "
    assert resolve_default_prompt(Settings(default_prompt_name="query"), info) == "query: "
    with pytest.raises(ConfigurationError, match="Available prompts"):
        resolve_default_prompt(Settings(default_prompt_name="doc"), info)
    with pytest.raises(ConfigurationError, match="no prompts were found"):
        resolve_default_prompt(Settings(default_prompt_name="doc"), _info(make_model))


def test_phase_labels() -> None:
    error = ValidationError("too long")
    assert failure_label(error) == "validation"
    assert failure_label(mark_phase(error, "tokenization")) == "tokenization"


def test_only_one_small_input_is_tokenized_on_the_event_loop() -> None:
    limit = INLINE_TOKENIZE_CHARS
    assert tokenize_inline(["a sentence"])
    assert tokenize_inline([("q" * (limit // 2), "d" * (limit // 2))])
    assert tokenize_inline([[101, 2023, 102]])
    assert not tokenize_inline(["one", "two"])  # a batch goes to the pool
    assert not tokenize_inline(["x" * (limit + 1)])
    assert not tokenize_inline([("q" * limit, "d")])
    assert not tokenize_inline([])
