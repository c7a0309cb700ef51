"""Request parsing: shapes TEI accepts, and clear 4xx for everything else."""

from __future__ import annotations

from typing import Any

import pytest

from tei_ort.errors import ValidationError
from tei_ort.http.schemas import (
    JsonSyntaxError,
    parse_decode,
    parse_embed,
    parse_inputs,
    parse_json,
    parse_openai,
    parse_predict,
    parse_predict_inputs,
    parse_rerank,
    parse_similarity,
    parse_tokenize,
    parse_vertex,
)


def test_json_syntax_errors_are_400() -> None:
    for body in (b"", b"{", b"{'a': 1}", b"nul", b"\xff"):
        with pytest.raises(JsonSyntaxError) as exc:
            parse_json(body)
        assert exc.value.status_code == 400
        assert "Failed to parse the request body as JSON" in exc.value.message


@pytest.mark.parametrize(
    ("value", "items", "single"),
    [
        ("a", ["a"], True),
        ([1, 2, 3], [[1, 2, 3]], True),
        (["a", "b"], ["a", "b"], False),
        (["a", [1, 2]], ["a", [1, 2]], False),
        ([[1], [2]], [[1], [2]], False),
        ([], [[]], True),  # TEI: one input, an empty list of token ids
        ("", [""], True),
    ],
)
def test_inputs_shapes(value: Any, items: list[Any], single: bool) -> None:
    assert parse_inputs(value) == (items, single)


@pytest.mark.parametrize(
    "value", [1, 1.5, None, True, {"a": 1}, [1, "a"], [True], [-1], [2**32], ["a", 1], [[1.5]]]
)
def test_inputs_wrong_types(value: Any) -> None:
    with pytest.raises(ValidationError) as exc:
        parse_inputs(value)
    assert exc.value.status_code == 422
    assert "`inputs`" in exc.value.message


def test_embed_defaults_and_fields() -> None:
    req = parse_embed({"inputs": "x"})
    assert (req.truncate, req.truncation_direction, req.prompt_name) == (None, "right", None)
    assert (req.normalize, req.dimensions, req.single) == (True, None, True)
    req = parse_embed(
        {
            "inputs": ["x"],
            "truncate": False,
            "truncation_direction": "Left",
            "prompt_name": "q",
            "normalize": False,
            "dimensions": 8,
        }
    )
    assert (req.truncate, req.truncation_direction, req.prompt_name) == (False, "left", "q")
    assert (req.normalize, req.dimensions, req.single) == (False, 8, False)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "must be a JSON object"),
        ("x", "must be a JSON object"),
        ({}, "missing field `inputs`"),
        ({"inputs": "x", "foo": 1}, "unknown field `foo`"),
        ({"inputs": "x", "truncate": "yes"}, "`truncate` must be a boolean or null"),
        ({"inputs": "x", "normalize": None}, "`normalize` must be a boolean"),
        ({"inputs": "x", "truncation_direction": "middle"}, "`truncation_direction`"),
        # TEI's names and aliases only (serde is case-sensitive)
        ({"inputs": "x", "truncation_direction": "LEFT"}, "`truncation_direction`"),
        ({"inputs": "x", "truncation_direction": "rIGHT"}, "`truncation_direction`"),
        ({"inputs": "x", "dimensions": -1}, "`dimensions`"),
        ({"inputs": "x", "dimensions": "8"}, "`dimensions`"),
        ({"inputs": "x", "prompt_name": 3}, "`prompt_name`"),
    ],
)
def test_embed_errors(body: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(")):
        parse_embed(body)


def test_embed_all_refuses_normalize() -> None:
    with pytest.raises(ValidationError, match="unknown field `normalize`"):
        parse_embed({"inputs": "x", "normalize": True}, pooled=False)


@pytest.mark.parametrize(
    ("value", "items", "single"),
    [
        ("a", ["a"], True),
        (["a"], ["a"], True),
        (["a", "b"], [("a", "b")], True),
        ([["a"], ["a", "b"]], ["a", ("a", "b")], False),
    ],
)
def test_predict_inputs(value: Any, items: list[Any], single: bool) -> None:
    assert parse_predict_inputs(value) == (items, single)


@pytest.mark.parametrize(
    "value", [[], ["a", "b", "c"], [["a", "b", "c"]], [[]], [1], [["a"], "b"], 3]
)
def test_predict_inputs_errors(value: Any) -> None:
    with pytest.raises(ValidationError, match=r"`inputs` .*\[string, string\]"):
        parse_predict_inputs(value)


def test_predict_fields() -> None:
    req = parse_predict({"inputs": "a", "raw_scores": True, "truncate": True})
    assert req.raw_scores and req.truncate and req.single
    with pytest.raises(ValidationError, match="unknown field"):
        parse_predict({"inputs": "a", "normalize": True})


def test_rerank_tei_form() -> None:
    req = parse_rerank({"query": "q", "texts": ["a", "b"], "return_text": True})
    assert not req.documents_form and req.texts == ["a", "b"] and req.return_text
    with pytest.raises(ValidationError, match="missing field `texts`"):
        parse_rerank({"query": "q"})
    with pytest.raises(ValidationError, match="`texts` must be a list of strings"):
        parse_rerank({"query": "q", "texts": "a"})
    with pytest.raises(ValidationError, match="`query` must be a string"):
        parse_rerank({"query": 1, "texts": []})
    with pytest.raises(ValidationError, match="unknown field `top_n`"):
        parse_rerank({"query": "q", "texts": ["a"], "top_n": 1})


def test_rerank_documents_form() -> None:
    req = parse_rerank(
        {
            "model": "m",
            "query": "q",
            "documents": ["a", {"text": "b"}],
            "top_n": 1,
            "return_documents": True,
            "max_chunks_per_doc": 10,
        }
    )
    assert req.documents_form and req.texts == ["a", "b"] and req.top_n == 1
    assert req.return_text and req.model == "m"
    assert parse_rerank({"query": "q", "texts": ["a"]}, documents_form=None).documents_form is False
    with pytest.raises(ValidationError, match="`documents` elements"):
        parse_rerank({"query": "q", "documents": [1]})
    with pytest.raises(ValidationError, match="missing field `documents`"):
        parse_rerank({"query": "q"}, documents_form=True)


def test_similarity() -> None:
    req = parse_similarity(
        {"inputs": {"source_sentence": "s", "sentences": ["a"]}, "parameters": {"truncate": True}}
    )
    assert req.source_sentence == "s" and req.sentences == ["a"] and req.truncate
    assert parse_similarity(
        {"inputs": {"source_sentence": "s", "sentences": []}, "parameters": None}
    )
    with pytest.raises(ValidationError, match="missing field `source_sentence`"):
        parse_similarity({"inputs": {"sentences": []}})
    with pytest.raises(ValidationError, match="unknown field `normalize` in the `parameters`"):
        parse_similarity(
            {"inputs": {"source_sentence": "s", "sentences": []}, "parameters": {"normalize": 1}}
        )
    # the parameters may name the model (a several-model server routes by it): a string
    with pytest.raises(ValidationError, match="`model` must be a string or null"):
        parse_similarity(
            {"inputs": {"source_sentence": "s", "sentences": []}, "parameters": {"model": {}}}
        )


def test_tokenize_and_decode() -> None:
    assert parse_tokenize({"inputs": "a"}).single
    assert (
        parse_tokenize({"inputs": ["a"], "add_special_tokens": False}).add_special_tokens is False
    )
    with pytest.raises(ValidationError):
        parse_tokenize({"inputs": [1]})
    assert parse_decode({"ids": [1, 2]}).ids == [[1, 2]]
    assert parse_decode({"ids": [[1], [2]]}).single is False
    assert parse_decode({"ids": []}).ids == [[]]
    for bad in ({"ids": "1"}, {"ids": [1, [2]]}, {"ids": [-1]}):
        with pytest.raises(ValidationError):
            parse_decode(bad)


def test_openai() -> None:
    req = parse_openai({"input": ["a"], "model": "m", "user": "u", "encoding_format": "base64"})
    assert req.encoding_format == "base64" and req.model == "m" and not req.single
    assert parse_openai({"input": "a", "encoding_format": None}).encoding_format == "float"
    with pytest.raises(ValidationError, match="encoding_format"):
        parse_openai({"input": "a", "encoding_format": "int8"})
    with pytest.raises(ValidationError, match="missing field `input`"):
        parse_openai({"model": "a"})
    with pytest.raises(ValidationError, match="unknown field `inputs`"):
        parse_openai({"inputs": "a"})


def test_vertex() -> None:
    assert parse_vertex({"instances": [{"inputs": "a"}]}) == [{"inputs": "a"}]
    with pytest.raises(ValidationError, match="`instances` must be a list"):
        parse_vertex({"instances": {}})


def test_hugging_face_parameters_object() -> None:
    req = parse_embed({"inputs": "x", "parameters": {"normalize": False, "truncate": True}})
    assert req.normalize is False and req.truncate is True
    top_wins = parse_embed({"inputs": "x", "normalize": True, "parameters": {"normalize": False}})
    assert top_wins.normalize is True
    assert parse_embed({"inputs": "x", "parameters": None}).normalize is True
    assert parse_predict({"inputs": "x", "parameters": {"raw_scores": True}}).raw_scores
    assert parse_tokenize({"inputs": "x", "parameters": {"add_special_tokens": False}})
    with pytest.raises(ValidationError, match="unknown field `top_k`"):
        parse_embed({"inputs": "x", "parameters": {"top_k": 3}})
    with pytest.raises(ValidationError, match="`parameters` must be an object"):
        parse_embed({"inputs": "x", "parameters": [1]})
