"""Cohere's input_type -> the model's prompt names, and --input-type-prompt."""

from __future__ import annotations

import argparse

import pytest

from tei_ort.cli.flags import SERVER_FLAGS, add_flags, settings_from_args
from tei_ort.errors import ConfigurationError
from tei_ort.serving.input_types import input_type_prompts

PROMPTS = {"query": "query: ", "passage": "passage: ", "classification": "classify: "}


def test_types_map_to_the_prompts_the_model_has() -> None:
    assert input_type_prompts(PROMPTS) == {
        "search_query": "query",
        "search_document": "passage",
        "classification": "classification",
    }
    # `document` is preferred to `passage` when the model has both
    both = {**PROMPTS, "document": "d: "}
    assert input_type_prompts(both)["search_document"] == "document"
    assert input_type_prompts({}) == {}


def test_the_flag_overrides_and_a_wrong_name_stops_the_start() -> None:
    mapping = input_type_prompts(PROMPTS, ("search_document=query", "clustering=passage"))
    assert mapping["search_document"] == "query" and mapping["clustering"] == "passage"
    with pytest.raises(ConfigurationError, match="no prompt `psg`"):
        input_type_prompts(PROMPTS, ("search_document=psg",))
    with pytest.raises(ConfigurationError, match="TYPE=NAME"):
        input_type_prompts(PROMPTS, ("search_document",))
    assert input_type_prompts({}, ("search_query=query",)) == {}  # no prompts: ignored


def test_the_flag_repeats_and_splits_on_commas() -> None:
    parser = argparse.ArgumentParser()
    add_flags(parser, SERVER_FLAGS)
    first = ["--input-type-prompt", "search_query=query,search_document=passage"]
    args = parser.parse_args([*first, "--input-type-prompt", "clustering=query"])
    settings = settings_from_args(parser, args, SERVER_FLAGS, environ={})
    assert settings.input_type_prompt == (
        "search_query=query",
        "search_document=passage",
        "clustering=query",
    )
    env = settings_from_args(
        parser, parser.parse_args([]), SERVER_FLAGS, environ={"INPUT_TYPE_PROMPT": "a=b"}
    )
    assert env.input_type_prompt == ("a=b",)
