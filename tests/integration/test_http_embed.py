"""Embedding routes in process (fake engine, real MiniLM tokenizer)."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest

from tei_ort.http.app import create_app
from tests.support.app import reference, reference_embedding, serve, settings

pytestmark = pytest.mark.anyio

TIMING_HEADERS = (
    "x-compute-time",
    "x-compute-characters",
    "x-compute-tokens",
    "x-total-time",
    "x-tokenization-time",
    "x-queue-time",
    "x-inference-time",
)


async def test_embed_single_and_batch(make_model: Any) -> None:
    model = make_model()
    async with serve(create_app(settings(), model)) as client:
        single = await client.post("/embed", json={"inputs": "What is Deep Learning?"})
        assert single.status_code == 200
        body = single.json()
        assert len(body) == 1 and len(body[0]) == 32  # a list even for one input
        np.testing.assert_allclose(
            body[0], reference_embedding(model, "What is Deep Learning?"), rtol=1e-5, atol=1e-6
        )
        assert single.headers["x-compute-type"] == "cpu"
        for header in TIMING_HEADERS:
            assert single.headers[header].isdigit(), header
        assert single.headers["x-compute-characters"] == "22"
        assert single.headers["x-compute-tokens"] == "7"

        texts = ["short", "a much longer sentence than the first one, with more tokens", "mid one"]
        batch = await client.post("/embed", json={"inputs": texts})
        assert batch.status_code == 200
        for got, text in zip(batch.json(), texts, strict=True):
            np.testing.assert_allclose(got, reference_embedding(model, text), rtol=1e-5, atol=1e-6)


async def test_normalize_and_dimensions(make_model: Any) -> None:
    model = make_model()
    async with serve(create_app(settings(), model)) as client:
        raw = (await client.post("/embed", json={"inputs": "hello", "normalize": False})).json()[0]
        np.testing.assert_allclose(
            raw, reference_embedding(model, "hello", normalize=False), rtol=1e-5
        )
        assert abs(np.linalg.norm(raw) - 1.0) > 1e-3
        cut = (await client.post("/embed", json={"inputs": "hello", "dimensions": 8})).json()[0]
        assert len(cut) == 8
        expected = np.asarray(raw[:8]) / np.linalg.norm(raw[:8])
        np.testing.assert_allclose(cut, expected, rtol=1e-5)
        for bad in (0, 33):
            response = await client.post("/embed", json={"inputs": "hello", "dimensions": bad})
            assert response.status_code == 422
            assert response.json()["error_type"] == "Validation"


async def test_token_ids_are_one_input(make_model: Any) -> None:
    model = make_model()
    (encoded,) = model.tokenizer.encode_batch(["hello world"])
    ids = encoded.input_ids.tolist()
    async with serve(create_app(settings(), model)) as client:
        by_ids = (await client.post("/embed", json={"inputs": ids})).json()
        by_text = (await client.post("/embed", json={"inputs": "hello world"})).json()
        mixed = (await client.post("/embed", json={"inputs": [ids, "hello world"]})).json()
    assert len(by_ids) == 1
    np.testing.assert_allclose(by_ids, by_text, rtol=1e-6)
    np.testing.assert_allclose(mixed[0], mixed[1], rtol=1e-6)


async def test_truncation(make_model: Any) -> None:
    model = make_model(max_input_length=8)
    text = "one two three four five six seven eight nine ten"
    async with serve(create_app(settings(), model)) as client:
        right = await client.post("/embed", json={"inputs": text})  # auto-truncate is on
        assert right.status_code == 200 and right.headers["x-compute-tokens"] == "8"
        expected = reference_embedding(model, "one two three four five six")
        np.testing.assert_allclose(right.json()[0], expected, rtol=1e-5, atol=1e-6)
        left = await client.post("/embed", json={"inputs": text, "truncation_direction": "left"})
        expected = reference_embedding(model, "five six seven eight nine ten")
        np.testing.assert_allclose(left.json()[0], expected, rtol=1e-5, atol=1e-6)
        refused = await client.post("/embed", json={"inputs": text, "truncate": False})
        assert refused.status_code == 422
        assert refused.json() == {
            "error": "Input validation error: `inputs` must have less than 8 tokens. Given: 12",
            "error_type": "Validation",
        }


async def test_auto_truncate_off_refuses_long_inputs(make_model: Any) -> None:
    model = make_model(max_input_length=8)
    async with serve(create_app(settings(auto_truncate=False), model)) as client:
        long = await client.post("/embed", json={"inputs": "a b c d e f g h i j"})
        assert long.status_code == 422
        ok = await client.post("/embed", json={"inputs": "a b c d e f g h i j", "truncate": True})
        assert ok.status_code == 200


async def test_prompts(make_model: Any) -> None:
    model = make_model(prompts={"query": "query: ", "doc": "passage: "})
    async with serve(create_app(settings(), model)) as client:
        prompted = (
            await client.post("/embed", json={"inputs": "x", "prompt_name": "query"})
        ).json()
        np.testing.assert_allclose(prompted[0], reference_embedding(model, "query: x"), rtol=1e-5)
        unknown = await client.post("/embed", json={"inputs": "x", "prompt_name": "nope"})
        assert unknown.status_code == 422 and unknown.json()["error"] == (
            "Input validation error: `default-prompt-name` is set to `nope` but it was not "
            'found in the Sentence Transformers prompts. Available prompts: ["doc", "query"]'
        )
    async with serve(create_app(settings(default_prompt_name="doc"), model)) as client:
        default = (await client.post("/embed", json={"inputs": "x"})).json()
        np.testing.assert_allclose(default[0], reference_embedding(model, "passage: x"), rtol=1e-5)
        explicit = (
            await client.post("/embed", json={"inputs": "x", "prompt_name": "query"})
        ).json()
        np.testing.assert_allclose(explicit[0], reference_embedding(model, "query: x"), rtol=1e-5)
    async with serve(create_app(settings(default_prompt="p: "), model)) as client:
        default = (await client.post("/embed", json={"inputs": "x"})).json()
        np.testing.assert_allclose(default[0], reference_embedding(model, "p: x"), rtol=1e-5)


async def test_embed_all(make_model: Any) -> None:
    model = make_model()
    async with serve(create_app(settings(), model)) as client:
        response = await client.post("/embed_all", json={"inputs": ["hello world", "hi"]})
    assert response.status_code == 200
    first, second = response.json()
    expected, _ = reference(model, "hello world")
    assert np.asarray(first).shape == (4, 32) and np.asarray(second).shape == (3, 32)
    np.testing.assert_allclose(first, expected[0], rtol=1e-5, atol=1e-6)


async def test_embed_sparse_on_splade(make_model: Any) -> None:
    model = make_model("splade")
    async with serve(create_app(settings(), model)) as client:
        response = await client.post("/embed_sparse", json={"inputs": "hello world"})
        assert response.status_code == 200
        (values,) = response.json()
        expected, _ = reference(model, "hello world")
        nonzero = np.nonzero(expected[0])[0]
        assert [v["index"] for v in values] == nonzero.tolist()
        np.testing.assert_allclose([v["value"] for v in values], expected[0][nonzero], rtol=1e-6)
        dense = await client.post("/embed", json={"inputs": "hello world", "normalize": False})
        assert dense.status_code == 200 and len(dense.json()[0]) == 30522
        refused = await client.post("/embed", json={"inputs": "hello world"})
        assert refused.status_code == 424
        assert "`normalize` is not available for SPLADE models" in refused.json()["error"]
        assert (await client.post("/embed_all", json={"inputs": "x"})).status_code == 424
        default = await client.post("/", json={"inputs": "hello world"})
        assert default.json() == response.json()


async def test_similarity(make_model: Any) -> None:
    model = make_model()
    body = {"inputs": {"source_sentence": "a cat", "sentences": ["a cat", "a dog", "stocks"]}}
    async with serve(create_app(settings(), model)) as client:
        response = await client.post("/similarity", json=body)
    assert response.status_code == 200
    source = reference_embedding(model, "a cat")
    expected = [float(source @ reference_embedding(model, s)) for s in ["a cat", "a dog", "stocks"]]
    np.testing.assert_allclose(response.json(), expected, rtol=1e-5, atol=1e-6)
    assert response.json()[0] == pytest.approx(1.0, abs=1e-5)


async def test_openai_float_and_base64(make_model: Any) -> None:
    model = make_model()
    async with serve(create_app(settings(served_model_name="my-model"), model)) as client:
        response = await client.post("/v1/embeddings", json={"input": ["a b", "c"], "model": "x"})
        assert response.status_code == 200
        body = response.json()
        assert body["object"] == "list" and body["model"] == "my-model"
        assert [d["index"] for d in body["data"]] == [0, 1]
        assert all(d["object"] == "embedding" for d in body["data"])
        assert body["usage"] == {"prompt_tokens": 7, "total_tokens": 7}
        np.testing.assert_allclose(
            body["data"][0]["embedding"], reference_embedding(model, "a b"), rtol=1e-5
        )
        encoded = await client.post(
            "/embeddings", json={"input": "a b", "encoding_format": "base64", "dimensions": 4}
        )
        vector = np.frombuffer(base64.b64decode(encoded.json()["data"][0]["embedding"]), "<f4")
        # Matryoshka: the first 4 dimensions of the pooled vector, normalized after the cut
        first4 = reference_embedding(model, "a b", normalize=False)[:4]
        np.testing.assert_allclose(vector, first4 / np.linalg.norm(first4), rtol=1e-5, atol=1e-6)
        error = await client.post("/v1/embeddings", json={"input": []})
        assert error.status_code == 400
        assert error.json() == {
            "message": "Input validation error: `inputs` cannot be empty",
            "code": 400,
            "type": "Empty",
        }


async def test_default_routes_and_vertex(make_model: Any) -> None:
    model = make_model()
    async with serve(create_app(settings(), model)) as client:
        embed = (await client.post("/embed", json={"inputs": "x"})).json()
        assert (await client.post("/", json={"inputs": "x"})).json() == embed
        assert (await client.post("/invocations", json={"inputs": "x"})).json() == embed
        vertex = await client.post(
            "/vertex", json={"instances": [{"inputs": "x"}, {"inputs": ["x", "y"]}]}
        )
        assert vertex.status_code == 200
        predictions = vertex.json()["predictions"]
        assert predictions[0] == embed and len(predictions[1]) == 2
        bad = await client.post("/vertex", json={"instances": [{"inputs": 1}]})
        assert bad.status_code == 422
