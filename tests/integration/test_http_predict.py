"""Classifier and re-ranker routes in process, in every re-rank format."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tei_ort.http.app import create_app
from tei_ort.serving.pooling import classifier_scores
from tests.support.app import reference, serve, settings

pytestmark = pytest.mark.anyio


def scores(model: Any, item: str | tuple[str, str], raw: bool = False) -> np.ndarray:
    logits, _ = reference(model, item)
    return classifier_scores(logits, raw)[0]


async def test_predict_single_pair_and_batch(make_model: Any) -> None:
    model = make_model("classifier")
    async with serve(create_app(settings(), model)) as client:
        single = await client.post("/predict", json={"inputs": "I like you."})
        assert single.status_code == 200
        body = single.json()
        assert {p["label"] for p in body} == {"negative", "neutral", "positive"}
        assert [p["score"] for p in body] == sorted((p["score"] for p in body), reverse=True)
        expected = scores(model, "I like you.")
        labels = ["negative", "neutral", "positive"]
        assert body[0]["label"] == labels[int(np.argmax(expected))]
        assert sum(p["score"] for p in body) == pytest.approx(1.0, abs=1e-5)

        pair = (await client.post("/predict", json={"inputs": ["a", "b"]})).json()
        assert pair[0]["score"] == pytest.approx(float(scores(model, ("a", "b")).max()), rel=1e-5)

        batch = await client.post("/predict", json={"inputs": [["I like you."], ["a", "b"]]})
        for got, alone in zip(batch.json(), [body, pair], strict=True):
            assert [p["label"] for p in got] == [p["label"] for p in alone]
            np.testing.assert_allclose(
                [p["score"] for p in got], [p["score"] for p in alone], rtol=1e-5, atol=1e-7
            )

        raw = (await client.post("/predict", json={"inputs": "x", "raw_scores": True})).json()
        assert max(p["score"] for p in raw) == pytest.approx(float(scores(model, "x", True).max()))

        assert (await client.post("/", json={"inputs": "I like you."})).json() == body
        assert (await client.post("/embed", json={"inputs": "x"})).status_code == 424
        rerank = await client.post("/rerank", json={"query": "q", "texts": ["a"]})
        assert rerank.status_code == 424
        assert rerank.json() == {
            "error": "Backend error: model is not a re-ranker model",
            "error_type": "Backend",
        }


async def test_rerank_tei_form(make_model: Any) -> None:
    model = make_model("reranker")
    texts = ["Deep learning is a kind of ML.", "Cheese is tasty.", "Neural networks", "x"]
    async with serve(create_app(settings(), model)) as client:
        response = await client.post("/rerank", json={"query": "What is DL?", "texts": texts})
        assert response.status_code == 200
        ranks = response.json()
        expected = [float(scores(model, ("What is DL?", t))[0]) for t in texts]
        assert [r["index"] for r in ranks] == list(np.argsort(expected)[::-1])
        np.testing.assert_allclose(
            [r["score"] for r in ranks], sorted(expected, reverse=True), rtol=1e-5
        )
        assert all("text" not in r for r in ranks)
        assert set(ranks[0]) == {"index", "score"}

        with_text = (
            await client.post(
                "/rerank", json={"query": "What is DL?", "texts": texts, "return_text": True}
            )
        ).json()
        assert [r["text"] for r in with_text] == [texts[r["index"]] for r in with_text]
        raw = (
            await client.post(
                "/rerank", json={"query": "What is DL?", "texts": texts, "raw_scores": True}
            )
        ).json()
        raw_expected = [float(scores(model, ("What is DL?", t), True)[0]) for t in texts]
        np.testing.assert_allclose(
            [r["score"] for r in raw], sorted(raw_expected, reverse=True), rtol=1e-5
        )
        default = await client.post("/invocations", json={"query": "What is DL?", "texts": texts})
        assert default.json() == ranks
        assert (await client.post("/predict", json={"inputs": ["q", "d"]})).status_code == 200


async def test_rerank_ties_keep_tei_order(make_model: Any) -> None:
    model = make_model("reranker")
    async with serve(create_app(settings(), model)) as client:
        ranks = (
            await client.post("/rerank", json={"query": "q", "texts": ["same", "same", "same"]})
        ).json()
    assert [r["index"] for r in ranks] == [2, 1, 0]  # TEI sorts ascending, then reverses


async def test_documents_forms(make_model: Any) -> None:
    model = make_model("reranker")
    docs = ["Deep learning is a kind of ML.", "Cheese is tasty.", "Neural networks"]
    expected = [float(scores(model, ("What is DL?", d))[0]) for d in docs]
    order = list(np.argsort(expected)[::-1])
    async with serve(create_app(settings(served_model_name="rr"), model)) as client:
        dify = await client.post("/rerank", json={"query": "What is DL?", "documents": docs})
        assert dify.status_code == 200
        results = dify.json()["results"]
        assert [r["index"] for r in results] == order
        assert set(results[0]) == {"index", "relevance_score"}
        np.testing.assert_allclose(
            [r["relevance_score"] for r in results], sorted(expected, reverse=True), rtol=1e-5
        )
        for route in ("/v1/rerank", "/v2/rerank"):
            body = {
                "model": "rerank-english-v3.0",
                "query": "What is DL?",
                "documents": [{"text": d} for d in docs],
                "top_n": 2,
                "return_documents": True,
            }
            cohere = (await client.post(route, json=body)).json()
            assert [r["index"] for r in cohere["results"]] == order[:2]
            assert [r["document"]["text"] for r in cohere["results"]] == [
                docs[i] for i in order[:2]
            ]
            assert cohere["model"] == "rerank-english-v3.0"
            assert cohere["usage"]["total_tokens"] > 0 and "id" in cohere
        jina = (
            await client.post("/v1/rerank", json={"query": "What is DL?", "documents": docs})
        ).json()
        assert jina["model"] == "rr" and len(jina["results"]) == 3
        assert "document" not in jina["results"][0]
        empty = await client.post("/v1/rerank", json={"query": "q", "documents": []})
        assert empty.status_code == 400
        assert empty.json() == {"error": "`documents` cannot be empty", "error_type": "Empty"}


async def test_embedding_model_refuses_classifier_routes(make_model: Any) -> None:
    async with serve(create_app(settings(), make_model())) as client:
        predict = await client.post("/predict", json={"inputs": "x"})
        assert predict.status_code == 424
        assert "Model is not a classifier model" in predict.json()["error"]
        sparse = await client.post("/embed_sparse", json={"inputs": "x"})
        assert sparse.status_code == 424
        assert "SPLADE" in sparse.json()["error"]
        metrics = (await client.get("/metrics")).text
        assert 'te_request_failure{err="model_type"} 2' in metrics


async def test_prompt_template_reranker(make_model: Any) -> None:
    """Qwen3-Reranker-style models: pairs are encoded in the model's prompt template."""
    from dataclasses import replace

    from tei_ort.model.rerank_templates import encode_rerank_pairs

    model = make_model("reranker")
    model.info = replace(model.info, rerank_template="qwen3")
    seen: list[np.ndarray] = []
    model.engine.on_run = lambda inputs: seen.append(inputs.input_ids[inputs.attention_mask == 1])
    async with serve(create_app(settings(), model)) as client:
        seen.clear()
        body = {"query": "what is onnx?", "texts": ["a format"], "instruction": "Find docs"}
        response = await client.post("/rerank", json=body)
        assert response.status_code == 200
        (expected,) = encode_rerank_pairs(
            "qwen3",
            model.tokenizer,
            [("what is onnx?", "a format")],
            instruction="Find docs",
            max_length=256,
        )
        np.testing.assert_array_equal(seen[-1], expected.input_ids)
        single = await client.post("/predict", json={"inputs": "just a text"})
        assert single.status_code == 422 and "pairs" in single.json()["error"]
