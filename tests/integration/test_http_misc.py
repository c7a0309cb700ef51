"""Tokenize, decode, info, health, metrics, docs, CORS, in process."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tei_ort.http.app import create_app
from tests.support.app import serve, settings

pytestmark = pytest.mark.anyio


async def test_tokenize(make_model: Any) -> None:
    model = make_model(prompts={"query": "query: "})
    async with serve(create_app(settings(), model)) as client:
        single = await client.post("/tokenize", json={"inputs": "héllo world"})
        assert single.status_code == 200
        assert single.json() == [
            [
                {"id": 101, "text": "[CLS]", "special": True, "start": None, "stop": None},
                {"id": 7592, "text": "héllo", "special": False, "start": 0, "stop": 6},
                {"id": 2088, "text": "world", "special": False, "start": 7, "stop": 12},
                {"id": 102, "text": "[SEP]", "special": True, "start": None, "stop": None},
            ]
        ]
        batch = await client.post(
            "/tokenize", json={"inputs": ["a", "b c"], "add_special_tokens": False}
        )
        assert [[t["text"] for t in row] for row in batch.json()] == [["a"], ["b", "c"]]
        prompted = await client.post("/tokenize", json={"inputs": "x", "prompt_name": "query"})
        assert [t["text"] for t in prompted.json()[0]] == ["[CLS]", "query", ":", "x", "[SEP]"]
        assert (await client.post("/tokenize", json={"inputs": []})).status_code == 400
        assert (await client.post("/tokenize", json={"inputs": ""})).status_code == 400
        too_many = await client.post("/tokenize", json={"inputs": ["a"] * 33})
        assert too_many.status_code == 422


async def test_decode(make_model: Any) -> None:
    async with serve(create_app(settings(), make_model())) as client:
        single = await client.post("/decode", json={"ids": [101, 7592, 2088, 102]})
        assert single.json() == ["hello world"]
        kept = await client.post(
            "/decode", json={"ids": [[101, 7592, 102], [2088]], "skip_special_tokens": False}
        )
        assert kept.json() == ["[CLS] hello [SEP]", "world"]
        empty = await client.post("/decode", json={"ids": []})
        assert empty.status_code == 400 and empty.json()["error_type"] == "Empty"
        assert (await client.post("/decode", json={"ids": [[1]] * 33})).status_code == 422


async def test_info(make_model: Any) -> None:
    s = settings(max_batch_requests=8, served_model_name="served", max_client_batch_size=10)
    async with serve(create_app(s, make_model())) as client:
        info = (await client.get("/info")).json()
    assert info["model_type"] == {"embedding": {"pooling": "mean"}}
    assert info["served_model_name"] == "served"
    assert info["model_dtype"] == "float32"
    assert info["max_input_length"] == 256
    assert info["max_batch_tokens"] == 16384 and info["max_batch_requests"] == 8
    assert info["max_client_batch_size"] == 10 and info["auto_truncate"] is True
    assert info["max_concurrent_requests"] == 512 and info["tokenization_workers"] == 2
    for key in ("model_id", "model_sha", "version", "sha", "docker_label"):
        assert key in info
    # TEI: the release it is, and --revision as given (null without it)
    assert info["version"] == "1.9.3" and info["model_sha"] is None
    async with serve(create_app(settings(revision="refs/pr/2"), make_model())) as client:
        assert (await client.get("/info")).json()["model_sha"] == "refs/pr/2"
    async with serve(create_app(settings(), make_model("classifier"))) as client:
        info = (await client.get("/info")).json()
    assert info["model_type"] == {
        "classifier": {
            "id2label": {"0": "negative", "1": "neutral", "2": "positive"},
            "label2id": {"negative": 0, "neutral": 1, "positive": 2},
        }
    }
    async with serve(create_app(settings(), make_model("reranker"))) as client:
        info = (await client.get("/info")).json()
    assert "reranker" in info["model_type"]
    # TEI copies config.json's label2id as it is, even when it disagrees with id2label
    model = make_model("classifier")
    model.info = dataclasses.replace(model.info, config={"label2id": {"LABEL_0": 0, "x": 2}})
    async with serve(create_app(settings(), model)) as client:
        info = (await client.get("/info")).json()
    assert info["model_type"]["classifier"]["label2id"] == {"LABEL_0": 0, "x": 2}


async def test_info_dtype_is_what_the_engine_runs(make_model: Any) -> None:
    """An engine that decides its dtype (the bf16 CPU default) is what /info reports."""
    model = make_model()
    model.engine.dtype = "bfloat16"
    async with serve(create_app(settings(), model)) as client:
        assert (await client.get("/info")).json()["model_dtype"] == "bfloat16"
    # the flag is what was asked; the engine's declaration is what runs
    async with serve(create_app(settings(dtype="int8"), make_model())) as client:
        assert (await client.get("/info")).json()["model_dtype"] == "float32"


async def test_max_input_length_clamped_to_max_batch_tokens(make_model: Any) -> None:
    async with serve(create_app(settings(max_batch_tokens=64), make_model())) as client:
        assert (await client.get("/info")).json()["max_input_length"] == 64
        long = await client.post("/embed", json={"inputs": "word " * 200})
        assert long.status_code == 200 and long.headers["x-compute-tokens"] == "64"


async def test_health_routes(make_model: Any) -> None:
    async with serve(create_app(settings(), make_model())) as client:
        for path in ("/health", "/", "/ping"):
            response = await client.get(path)
            assert response.status_code == 200 and response.content == b"", path


async def test_metrics_follow_requests(make_model: Any) -> None:
    async with serve(create_app(settings(), make_model())) as client:
        await client.post("/embed", json={"inputs": "x"})
        await client.post("/embed", json={"inputs": ["x", "y"]})
        await client.post("/embed", json={"inputs": ["x"] * 40})
        await client.post("/embed", content=b"{", headers={"content-type": "application/json"})
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'te_request_count{method="single"} 1' in text
    assert 'te_request_count{method="batch"} 2' in text
    assert 'te_request_success{method="batch"} 1' in text
    assert 'te_request_failure{err="batch_size"} 1' in text
    assert 'te_request_failure{err="validation"} 1' in text
    assert "te_embed_count 3\n" in text and "te_embed_success 3\n" in text
    assert "te_embed_duration_count 3\n" in text
    assert "te_request_duration_count 2\n" in text
    assert "te_request_input_length_count 3\n" in text
    assert "te_batch_next_size_count" in text and "te_queue_size 0" in text


async def test_docs_and_openapi(make_model: Any) -> None:
    async with serve(create_app(settings(api_key="secret"), make_model())) as client:
        redirect = await client.get("/docs")
        assert redirect.status_code == 303 and redirect.headers["location"] == "/docs/"
        docs = await client.get("/docs/")
        assert docs.status_code == 200 and "./swagger-initializer.js" in docs.text
        document = (await client.get("/api-doc/openapi.json")).json()
    assert document["openapi"].startswith("3.")
    for path in (
        "/embed",
        "/embed_all",
        "/embed_sparse",
        "/predict",
        "/rerank",
        "/similarity",
        "/tokenize",
        "/decode",
        "/v1/embeddings",
        "/embeddings",
        "/info",
        "/health",
        "/metrics",
        "/vertex",
        "/invocations",
        "/",
        "/v1/rerank",
        "/v2/rerank",
    ):
        assert path in document["paths"], path
    schemas = document["components"]["schemas"]
    for ref in _refs(document["paths"]):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


def _refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["$ref"]] if "$ref" in value else []
        return found + [r for v in value.values() for r in _refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    return []


async def test_cors(make_model: Any) -> None:
    app = create_app(settings(cors_allow_origin=("http://allowed.example",)), make_model())
    async with serve(app) as client:
        preflight = await client.options(
            "/embed",
            headers={
                "origin": "http://allowed.example",
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "http://allowed.example"
        other = await client.post(
            "/embed", json={"inputs": "x"}, headers={"origin": "http://other.example"}
        )
        assert "access-control-allow-origin" not in other.headers
    async with serve(create_app(settings(), make_model())) as client:
        anyone = await client.post("/embed", json={"inputs": "x"}, headers={"origin": "http://a.b"})
        assert anyone.headers["access-control-allow-origin"] == "*"


def test_start_up_refuses_bad_prompt_and_budget(make_model: Any) -> None:
    """Settings that cannot work with the model stop create_app (serve exits 1)."""
    from tei_ort.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="no prompts were found"):
        create_app(settings(default_prompt_name="query"), make_model())
    with pytest.raises(ConfigurationError, match="Available prompts"):
        create_app(settings(default_prompt_name="doc"), make_model(prompts={"query": "q: "}))
    with pytest.raises(ConfigurationError) as refused:
        create_app(settings(max_batch_tokens=64, auto_truncate=False), make_model())
    assert refused.value.args[0] == (  # TEI's words (router/src/lib.rs)
        "The maximum input length is `256` which exceeds `--max-batch-tokens=64`. Either "
        "increase `--max-batch-tokens` to at least `256`, or set `--auto-truncate true` so "
        "that regardless the maximum input length, those are truncated to `64` tokens."
    )
