"""Batching under load, overload (429), disconnected clients, engine failures and health."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx
import numpy as np
import pytest

from tei_ort.engines.base import EngineInputs
from tei_ort.http.app import create_app
from tests.support.app import lifespan, reference_embedding, serve, settings, until

pytestmark = pytest.mark.anyio

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "omicron",
]


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 40)))


async def test_many_concurrent_clients_get_their_own_answers_in_order(make_model: Any) -> None:
    model = make_model(delay_s=0.005, pad_multiple=16)  # the GPU engines' buckets
    rng = random.Random(0)
    requests = [[sentence(rng) for _ in range(rng.randint(1, 6))] for _ in range(60)]
    app = create_app(settings(max_batch_tokens=512), model)
    async with serve(app) as client:
        started = len(model.engine.calls)  # the start-up probe and calibration runs

        async def one(texts: list[str]) -> list[list[float]]:
            response = await client.post("/embed", json={"inputs": texts})
            assert response.status_code == 200, response.text
            body: list[list[float]] = response.json()
            return body

        answers = await asyncio.gather(*(one(texts) for texts in requests))
    calls = list(model.engine.calls)
    for texts, answer in zip(requests, answers, strict=True):
        assert len(answer) == len(texts)
        for text, vector in zip(texts, answer, strict=True):
            np.testing.assert_allclose(
                vector, reference_embedding(model, text), rtol=1e-4, atol=1e-5
            )
    sizes = [size for size, _ in calls[started:]]
    assert max(sizes) > 1, "requests were never batched together"
    assert all(size * length <= 512 or size == 1 for size, length in calls)
    assert all(length % 16 == 0 for _, length in calls), calls


async def test_one_request_spans_batches_and_keeps_order(make_model: Any) -> None:
    model = make_model()
    texts = [f"sentence number {i} " + "word " * (i % 7) for i in range(32)]
    app = create_app(settings(max_batch_tokens=64, max_batch_requests=3), model)
    async with serve(app) as client:
        response = await client.post("/embed", json={"inputs": texts})
    assert response.status_code == 200
    for text, vector in zip(texts, response.json(), strict=True):
        np.testing.assert_allclose(vector, reference_embedding(model, text), rtol=1e-4, atol=1e-5)
    assert len(model.engine.calls) > 10 and all(size <= 3 for size, _ in model.engine.calls)


async def test_engine_batch_limit_caps_max_batch_requests(make_model: Any) -> None:
    model = make_model(max_batch_size=2)
    async with serve(create_app(settings(), model)) as client:
        assert (await client.get("/info")).json()["max_batch_requests"] == 2
        response = await client.post("/embed", json={"inputs": ["a", "b", "c", "d", "e"]})
    assert response.status_code == 200


async def test_burst_over_max_concurrent_requests_gets_429(make_model: Any) -> None:
    model = make_model(delay_s=0.2)
    app = create_app(settings(max_concurrent_requests=2), model)
    async with serve(app) as client:
        responses = await asyncio.gather(
            *(client.post("/embed", json={"inputs": f"text {i}"}) for i in range(10))
        )
        codes = sorted(r.status_code for r in responses)
        assert codes.count(200) >= 2 and codes.count(429) >= 1 and set(codes) <= {200, 429}
        refused = next(r for r in responses if r.status_code == 429)
        assert refused.json() == {"error": "Model is overloaded", "error_type": "Overloaded"}
        openai = await asyncio.gather(
            *(client.post("/v1/embeddings", json={"input": f"t {i}"}) for i in range(6))
        )
        refused = next(r for r in openai if r.status_code == 429)
        assert refused.json() == {
            "message": "Model is overloaded",
            "code": 429,
            "type": "Overloaded",
        }
        # a batch request waits for permits instead of being refused (as TEI)
        batch = await client.post("/embed", json={"inputs": [f"b {i}" for i in range(6)]})
        assert batch.status_code == 200 and len(batch.json()) == 6
        metrics = (await client.get("/metrics")).text
        assert app.state.infer.permits.free == 2  # every permit came back
    assert 'te_request_failure{err="overloaded"}' in metrics
    values = dict(line.rsplit(" ", 1) for line in metrics.splitlines() if line[:1] != "#")
    assert values["te_embed_count"] == values["te_embed_success"]  # refused inputs not counted


async def test_disconnected_client_is_dropped_and_counted(make_model: Any) -> None:
    model = make_model()
    seen: list[np.ndarray] = []
    model.engine.on_run = lambda inputs: seen.append(inputs.input_ids.copy())
    app = create_app(settings(max_concurrent_requests=8), model)
    (gone_ids,) = model.tokenizer.encode_batch(["xylophone"], add_special_tokens=False)
    async with lifespan(app):
        model.engine.delay_s = 0.5  # slow from now on (not for the start-up probe)
        queue = app.state.infer.queue
        runs = len(seen)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
        first = asyncio.ensure_future(client.post("/embed", json={"inputs": "first"}))
        await until(lambda: len(seen) > runs, "the engine runs 'first'")
        second = asyncio.ensure_future(client.post("/embed", json={"inputs": "second"}))
        await until(lambda: len(queue) == 1, "'second' waits for the engine")
        disconnect = asyncio.Event()
        messages = [
            {"type": "http.request", "body": b'{"inputs": "xylophone"}', "more_body": False}
        ]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop(0)
            await disconnect.wait()
            return {"type": "http.disconnect"}

        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/embed",
            "raw_path": b"/embed",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"content-type", b"application/json")],
            "client": ("127.0.0.1", 1234),
            "server": ("testserver", 80),
        }
        gone = asyncio.ensure_future(app(scope, receive, send))
        await until(lambda: len(queue) == 2, "'xylophone' waits in the queue too")
        assert len(seen) == runs + 1  # still running 'first': nothing else has run
        disconnect.set()
        await gone
        assert (await first).status_code == 200 and (await second).status_code == 200
        after = await client.post("/embed", json={"inputs": "after"})
        assert after.status_code == 200
        metrics = (await client.get("/metrics")).text
        await client.aclose()
        assert app.state.infer.permits.free == 8  # every permit came back
    assert 'te_request_failure{err="dropped"} 1' in metrics
    assert all(int(gone_ids.input_ids[0]) not in ids for ids in seen)


async def test_failed_batch_fails_only_its_requests_and_health_recovers(make_model: Any) -> None:
    model = make_model(fail_on_token=2088)  # "world"
    async with serve(create_app(settings(), model)) as client:
        bad = await client.post("/embed", json={"inputs": "hello world"})
        assert bad.status_code == 424
        assert bad.json()["error_type"] == "Backend"
        assert bad.json()["error"].startswith("Backend error: ")
        assert "Inference error" not in bad.json()["error"]
        good = await client.post("/embed", json={"inputs": "hello there"})
        assert good.status_code == 200
        assert (await client.get("/health")).status_code == 200
        openai = await client.post("/v1/embeddings", json={"input": ["a", "hello world"]})
        assert openai.status_code == 424 and openai.json()["type"] == "Backend"
        assert (await client.get("/health")).status_code == 200
        metrics = (await client.get("/metrics")).text
    assert 'te_request_failure{err="inference"} 2' in metrics


async def test_broken_engine_turns_health_to_503(make_model: Any) -> None:
    app = create_app(settings(), make_model(fail_always=True))
    async with serve(app) as client:
        health = await client.get("/health")
        assert health.status_code == 503
        assert health.json() == {"error": "unhealthy", "error_type": "Unhealthy"}
        assert (await client.get("/")).status_code == 503
        assert (await client.post("/embed", json={"inputs": "x"})).status_code == 424
        app.state.infer.engine.fail_always = False  # the engine recovers
        assert (await client.get("/health")).status_code == 200


async def test_concurrent_predictions_and_embeddings_do_not_cross(make_model: Any) -> None:
    model = make_model("reranker", delay_s=0.002)
    rng = random.Random(1)
    queries = [sentence(rng) for _ in range(20)]
    docs = [[sentence(rng) for _ in range(rng.randint(1, 5))] for _ in queries]
    async with serve(create_app(settings(), model)) as client:
        answers = await asyncio.gather(
            *(
                client.post("/rerank", json={"query": q, "texts": d, "raw_scores": True})
                for q, d in zip(queries, docs, strict=True)
            )
        )
    for q, d, answer in zip(queries, docs, answers, strict=True):
        by_index = {r["index"]: r["score"] for r in answer.json()}
        for i, text in enumerate(d):
            (encoded,) = model.tokenizer.encode_batch([(q, text)])
            ids = encoded.input_ids[None, :]
            logits = model.engine.run(
                EngineInputs(ids, np.ones_like(ids), encoded.token_type_ids[None, :])
            )
            assert by_index[i] == pytest.approx(float(logits[0, 0]), rel=1e-4, abs=1e-5)


@pytest.mark.parametrize(("pad_multiple", "padded"), [(1, 9), (16, 16)])
async def test_engine_gets_the_padding_it_asks_for(
    make_model: Any, pad_multiple: int, padded: int
) -> None:
    """CPU engines (``pad_multiple`` 1: no compute on padding) get exact lengths; GPU engines
    (16) get lengths bucketed to repeat for their profiles and CUDA graphs."""
    model = make_model(pad_multiple=pad_multiple)
    async with serve(create_app(settings(), model)) as client:
        response = await client.post("/embed", json={"inputs": ["a b c", "a b c d e f g"]})
        assert response.status_code == 200
    assert model.engine.calls[-1] == (2, padded)
