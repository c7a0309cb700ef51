"""Every documented error, with TEI's body and status (OpenAI's body on OpenAI routes)."""

from __future__ import annotations

from typing import Any

import pytest

from tei_ort.http.app import create_app
from tests.support.app import serve, settings

pytestmark = pytest.mark.anyio

ROUTES_WITH_INPUTS = ["/embed", "/embed_all", "/predict", "/tokenize"]
JSON = {"content-type": "application/json"}


@pytest.mark.parametrize("body", [b"{", b"", b"not json", b'{"inputs": "a",}', b"\xff\xfe"])
async def test_malformed_json_is_400(make_model: Any, body: bytes) -> None:
    async with serve(create_app(settings(), make_model())) as client:
        response = await client.post("/embed", content=body, headers=JSON)
        assert response.status_code == 400
        error = response.json()
        assert error["error_type"] == "Validation"
        assert error["error"].startswith("Failed to parse the request body as JSON")
        openai = await client.post("/v1/embeddings", content=body, headers=JSON)
        assert openai.status_code == 400
        assert set(openai.json()) == {"message", "code", "type"} and openai.json()["code"] == 400


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"inputs": 3}, "`inputs` must be"),
        ({"inputs": None}, "`inputs` must be"),
        ({"inputs": {"a": 1}}, "`inputs` must be"),
        ({"inputs": [1.5]}, "`inputs`"),
        ({"inputs": ["a", 3]}, "`inputs` must be"),
        ({}, "missing field `inputs`"),
        ({"input": "x"}, "unknown field `input`"),
        ({"inputs": "x", "extra": True}, "unknown field `extra`"),
        ({"inputs": "x", "normalize": "yes"}, "`normalize` must be a boolean"),
        ({"inputs": "x", "truncate": 1}, "`truncate` must be a boolean or null"),
        ({"inputs": "x", "truncation_direction": "up"}, "`truncation_direction`"),
        ([1, 2], "must be a JSON object"),
        ("inputs", "must be a JSON object"),
    ],
)
async def test_wrong_types_and_fields_are_422(make_model: Any, body: Any, fragment: str) -> None:
    async with serve(create_app(settings(), make_model())) as client:
        response = await client.post("/embed", json=body)
    assert response.status_code == 422
    assert response.json()["error_type"] == "Validation"
    assert fragment in response.json()["error"]


async def test_wrong_types_on_every_route(make_model: Any) -> None:
    async with serve(create_app(settings(), make_model("reranker"))) as client:
        for path, body in [
            ("/predict", {"inputs": ["a", "b", "c"]}),
            ("/rerank", {"query": "q"}),
            ("/rerank", {"query": "q", "texts": [1]}),
            ("/v1/rerank", {"query": "q", "documents": [{"title": "no text"}]}),
            ("/similarity", {"inputs": "x"}),
            ("/tokenize", {"inputs": 5}),
            ("/decode", {"ids": "abc"}),
            ("/decode", {"ids": [-5]}),
            ("/vertex", {"instances": "x"}),
            ("/embed_sparse", {"inputs": "x", "normalize": True}),
        ]:
            response = await client.post(path, json=body)
            assert response.status_code == 422, (path, body, response.text)
            assert response.json()["error_type"] == "Validation"
        openai = await client.post("/v1/embeddings", json={"input": "x", "encoding_format": "hex"})
        assert openai.status_code == 422
        assert openai.json()["type"] == "Validation" and openai.json()["code"] == 422


async def test_empty_inputs_are_400(make_model: Any) -> None:
    async with serve(create_app(settings(), make_model())) as client:
        for path, body, message in [
            ("/embed", {"inputs": []}, "Input validation error: `inputs` cannot be empty"),
            ("/embed", {"inputs": ""}, "Input validation error: `inputs` cannot be empty"),
            ("/embed", {"inputs": ["a", ""]}, "Input validation error: `inputs` cannot be empty"),
            ("/embed_all", {"inputs": []}, "Input validation error: `inputs` cannot be empty"),
            (
                "/similarity",
                {"inputs": {"source_sentence": "a", "sentences": []}},
                "`inputs.sentences` cannot be empty",
            ),
            ("/tokenize", {"inputs": []}, "`inputs` cannot be empty"),
        ]:
            response = await client.post(path, json=body)
            assert response.status_code == 400, (path, body)
            assert response.json() == {"error": message, "error_type": "Empty"}
    async with serve(create_app(settings(), make_model("reranker"))) as client:
        for path, body in [
            ("/rerank", {"query": "q", "texts": []}),
            ("/predict", {"inputs": ""}),
            ("/predict", {"inputs": [["", ""]]}),
        ]:
            response = await client.post(path, json=body)
            assert response.status_code == 400, (path, body)
            assert response.json()["error_type"] == "Empty"


async def test_validation_errors_are_422(make_model: Any) -> None:
    async with serve(create_app(settings(max_client_batch_size=3), make_model())) as client:
        response = await client.post("/embed", json={"inputs": ["a"] * 4})
        assert response.status_code == 422
        assert response.json() == {
            "error": "batch size 4 > maximum allowed batch size 3",
            "error_type": "Validation",
        }
        assert (await client.post("/embed", json={"inputs": ["a"] * 3})).status_code == 200
        similarity = {"inputs": {"source_sentence": "a", "sentences": ["b", "c", "d"]}}
        assert (await client.post("/similarity", json=similarity)).status_code == 422
        openai = await client.post("/v1/embeddings", json={"input": ["a"] * 4})
        assert openai.json() == {
            "message": "batch size 4 > maximum allowed batch size 3",
            "code": 422,
            "type": "Validation",
        }
    async with serve(
        create_app(settings(max_client_batch_size=2), make_model("reranker"))
    ) as client:
        rerank = await client.post("/rerank", json={"query": "q", "texts": ["a", "b", "c"]})
        assert rerank.status_code == 422


async def test_too_long_without_truncation(make_model: Any) -> None:
    async with serve(
        create_app(settings(auto_truncate=False), make_model(max_input_length=16))
    ) as client:
        response = await client.post("/embed", json={"inputs": "word " * 20})
        assert response.status_code == 422
        assert response.json()["error"] == (
            "Input validation error: `inputs` must have less than 16 tokens. Given: 22"
        )
        ids = await client.post("/embed", json={"inputs": list(range(1000, 1020))})
        assert ids.status_code == 422
        chars = await client.post("/embed", json={"inputs": "a" * (16 * 250 + 1)})
        assert chars.status_code == 422
        assert chars.json()["error"] == (
            "Input validation error: `inputs` must have less than 4000 characters. Given: 4001"
        )
        metrics = (await client.get("/metrics")).text
        assert 'te_request_failure{err="tokenization"} 3' in metrics


async def test_out_of_vocabulary_ids(make_model: Any) -> None:
    async with serve(create_app(settings(), make_model())) as client:
        response = await client.post("/embed", json={"inputs": [101, 99999, 102]})
    assert response.status_code == 422 and "out of the vocabulary" in response.json()["error"]


async def test_payload_over_the_limit_is_413_in_plain_text(make_model: Any) -> None:
    """TEI's framework (axum) refuses the body before any handler: plain text, every route."""
    async with serve(create_app(settings(payload_limit=100), make_model())) as client:
        response = await client.post("/embed", json={"inputs": "x" * 200})
        assert response.status_code == 413
        assert response.headers["content-type"].startswith("text/plain")
        assert response.text == "Failed to buffer the request body: length limit exceeded"

        async def chunks():  # type: ignore[no-untyped-def]
            for _ in range(10):
                yield b'{"inputs": "' + b"x" * 20

        streamed = await client.post(  # no content-length
            "/embed", content=chunks(), headers=JSON
        )
        assert streamed.status_code == 413
        assert streamed.text == "Failed to buffer the request body: length limit exceeded"
        assert (await client.post("/embed", json={"inputs": "x" * 50})).status_code == 200
        openai = await client.post("/v1/embeddings", json={"input": "x" * 200})
        assert openai.status_code == 413
        assert openai.text == "Failed to buffer the request body: length limit exceeded"


async def test_api_key(make_model: Any) -> None:
    async with serve(create_app(settings(api_key="secret"), make_model())) as client:
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "secret"}):
            response = await client.post("/embed", json={"inputs": "x"}, headers=headers)
            assert response.status_code == 401
            assert response.content == b"" and "content-type" not in response.headers
        assert (await client.post("/", json={"inputs": "x"})).status_code == 401
        assert (await client.post("/v1/embeddings", json={"input": "x"})).status_code == 401
        assert (await client.get("/info")).status_code == 401
        assert (await client.get("/embed")).status_code == 401  # a guarded path, any method
        ok = await client.post(
            "/embed", json={"inputs": "x"}, headers={"authorization": "Bearer secret"}
        )
        assert ok.status_code == 200
        wrong_method = await client.get("/embed", headers={"authorization": "Bearer secret"})
        assert wrong_method.status_code == 405
        for path in ("/health", "/", "/ping", "/metrics", "/docs/", "/api-doc/openapi.json"):
            assert (await client.get(path)).status_code == 200, path
        # as TEI: a path that does not exist is 404 and PUT / is 405, key or not
        assert (await client.post("/nope", json={})).status_code == 404
        assert (await client.put("/", json={})).status_code == 405


async def test_unknown_route_and_method_have_no_body(make_model: Any) -> None:
    async with serve(create_app(settings(), make_model())) as client:
        missing = await client.post("/nope", json={})
        assert missing.status_code == 404 and missing.content == b""
        method = await client.get("/embed")
        assert method.status_code == 405 and method.content == b""
        assert method.headers["allow"] == "POST"


async def test_dimensions_over_the_vector_is_422_with_teis_text(make_model: Any) -> None:
    async with serve(create_app(settings(), make_model())) as client:
        response = await client.post("/embed", json={"inputs": "x", "dimensions": 1000})
        assert response.status_code == 422
        assert response.json() == {
            "error": "Input validation error: `dimensions` should be smaller than the maximum "
            "embedding dimension.",
            "error_type": "Validation",
        }
        zero = await client.post("/embed", json={"inputs": "x", "dimensions": 0})
        assert zero.status_code == 422
        assert zero.json()["error"] == "Input validation error: `dimensions` should be positive"
        openai = await client.post("/v1/embeddings", json={"input": "x", "dimensions": 1000})
        assert openai.status_code == 422 and openai.json()["code"] == 422


async def test_model_kind_errors_in_teis_order_and_words(make_model: Any) -> None:
    async with serve(create_app(settings(), make_model("classifier"))) as client:
        for path, body, message in [
            ("/embed", {"inputs": "x"}, "Backend error: Model is not an embedding model"),
            ("/embed_all", {"inputs": "x"}, "Backend error: Model is not an embedding model"),
            # TEI checks SPLADE first on /embed_sparse and dimensions == 0 first on /embed
            (
                "/embed_sparse",
                {"inputs": "x"},
                "Backend error: Model is not an embedding model with SPLADE pooling",
            ),
            (
                "/embed",
                {"inputs": "x", "dimensions": 0},
                "Input validation error: `dimensions` should be positive",
            ),
            (
                "/rerank",
                {"query": "q", "texts": ["a"]},
                "Backend error: model is not a re-ranker model",
            ),
        ]:
            response = await client.post(path, json=body)
            assert response.json()["error"] == message, path
    async with serve(create_app(settings(), make_model())) as client:
        predict = await client.post("/predict", json={"inputs": "x"})
        assert predict.status_code == 424
        assert predict.json() == {
            "error": "Backend error: Model is not a classifier model",
            "error_type": "Backend",
        }
    async with serve(create_app(settings(), make_model("splade"))) as client:
        for path, body, message in [
            ("/embed", {"inputs": "x"}, "`normalize` is not available for SPLADE models"),
            ("/embed_all", {"inputs": "x"}, "`embed_all` is not available for SPLADE models"),
        ]:
            response = await client.post(path, json=body)
            assert response.json()["error"] == f"Backend error: {message}", path


async def test_unknown_prompt_names_as_tei_words_them(make_model: Any) -> None:
    async with serve(create_app(settings(), make_model())) as client:
        response = await client.post("/embed", json={"inputs": "x", "prompt_name": "query"})
    assert response.status_code == 422
    assert response.json()["error"] == (
        "Input validation error: `default-prompt-name` is set to `query` but no prompts were "
        "found in the Sentence Transformers configuration"
    )


async def test_empty_texts_and_ids_word_for_word(make_model: Any) -> None:
    async with serve(create_app(settings(), make_model("reranker"))) as client:
        texts = await client.post("/rerank", json={"query": "q", "texts": []})
        assert texts.json() == {"error": "`texts` cannot be empty", "error_type": "Empty"}
        ids = await client.post("/decode", json={"ids": [[1], []]})
        assert ids.status_code == 400
        assert ids.json() == {
            "error": "Input validation error: `input_ids` cannot be empty",
            "error_type": "Empty",
        }
