"""Overload, in process with a fake engine: requests admitted in arrival order,
--max-queue-wait, clients that leave while waiting, /vertex through the same admission.

The engine's ``on_run`` hook records which inputs each run carried (decoded back to text),
so "costs no engine time" and "in arrival order" are measured on what the engine ran.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest

from tei_ort.engines.base import EngineInputs
from tei_ort.http.app import create_app
from tests.support.app import lifespan, reference_embedding, serve, settings

pytestmark = pytest.mark.anyio


class Runs:
    """What the engine ran, run by run, as texts; ``gate`` holds every run until set."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.texts: list[list[str]] = []
        self.gate = threading.Event()
        self.started = threading.Event()
        model.engine.on_run = self._record

    def _record(self, inputs: EngineInputs) -> None:
        rows = [
            row[mask > 0].tolist()
            for row, mask in zip(inputs.input_ids, inputs.attention_mask, strict=True)
        ]
        self.texts.append(self.model.tokenizer.decode_batch(rows))
        self.started.set()
        self.gate.wait(10.0)

    def flat(self) -> list[str]:
        return [text for run in self.texts for text in run]


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out waiting for the server's state"
        await asyncio.sleep(0.005)


def texts_of(request: int, count: int) -> list[str]:
    return [f"request {request} text {i}" for i in range(count)]


def request_of(text: str) -> int:
    return int(text.split()[1])


async def test_requests_are_admitted_and_run_in_arrival_order(make_model: Any) -> None:
    model = make_model()
    app = create_app(settings(max_concurrent_requests=6, max_batch_requests=6), model)
    async with serve(app) as client:
        runs = Runs(model)
        infer = app.state.infer
        # the engine holds a first request; the others arrive one by one, each of 4 inputs
        # (over the 6 permits, so that freed permits could be shared among several)
        first = asyncio.ensure_future(client.post("/embed", json={"inputs": texts_of(0, 4)}))
        await until(runs.started.is_set)
        posts = [first]
        for index in range(1, 9):
            body = {"inputs": texts_of(index, 4)}
            posts.append(asyncio.ensure_future(client.post("/embed", json=body)))
            await until(lambda i=index: infer.permits.waiting == i)  # its place is taken
        runs.gate.set()
        responses = await asyncio.gather(*posts)
    assert all(r.status_code == 200 for r in responses)
    order = [request_of(text) for text in runs.flat()]
    assert len(order) == 36 and order == sorted(order), runs.texts  # none overtook an older one
    assert infer.permits.free == 6


async def test_max_queue_wait_refuses_with_429_and_withdraws_the_queued_inputs(
    make_model: Any,
) -> None:
    model = make_model()
    app = create_app(settings(max_concurrent_requests=2, max_queue_wait=0.3), model)
    async with serve(app) as client:
        runs = Runs(model)
        infer = app.state.infer
        holding = asyncio.ensure_future(client.post("/embed", json={"inputs": "request 0 held"}))
        await until(runs.started.is_set)
        # 1 permit left: the request queues 1 of its 3 inputs, then waits past its deadline
        late = await client.post("/embed", json={"inputs": texts_of(1, 3)})
        assert late.status_code == 429
        assert late.json() == {"error": "Model is overloaded", "error_type": "Overloaded"}
        assert len(infer.queue) == 0 and infer.permits.waiting == 0  # withdrawn at once
        await until(lambda: infer.permits.free == 1)  # its queued input's permit came back
        runs.gate.set()
        assert (await holding).status_code == 200
        after = await client.post("/embed", json={"inputs": texts_of(2, 2)})
        assert after.status_code == 200
        metrics = (await client.get("/metrics")).text
    assert not [t for t in runs.flat() if t.startswith("request 1 ")], runs.texts
    assert 'te_request_failure{err="overloaded"} 1' in metrics
    assert infer.permits.free == 2


async def test_a_client_that_leaves_while_waiting_costs_no_engine_time(make_model: Any) -> None:
    model = make_model()
    app = create_app(settings(max_concurrent_requests=2), model)
    async with lifespan(app):
        runs = Runs(model)
        infer = app.state.infer
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
        holding = asyncio.ensure_future(client.post("/embed", json={"inputs": texts_of(0, 2)}))
        await until(runs.started.is_set)
        disconnect = asyncio.Event()
        gone = asyncio.ensure_future(
            app(
                _scope("/embed"),
                _receive(b'{"inputs": ["request 1 a", "request 1 b"]}', disconnect),
                _ignore,
            )
        )
        await until(lambda: infer.permits.waiting == 1)
        disconnect.set()
        await gone
        assert infer.permits.waiting == 0
        runs.gate.set()
        assert (await holding).status_code == 200
        calls_before = len(model.engine.calls)
        await asyncio.sleep(0.1)  # time for any leftover of the gone request to run
        assert len(model.engine.calls) == calls_before
        await client.aclose()
    assert infer.permits.free == 2
    assert not [t for t in runs.flat() if t.startswith("request 1 ")], runs.texts


def _scope(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }


def _receive(body: bytes, disconnect: asyncio.Event) -> Callable[[], Any]:
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await disconnect.wait()
        return {"type": "http.disconnect"}

    return receive


async def _ignore(message: dict[str, Any]) -> None:
    return None


async def test_vertex_takes_more_instances_than_the_client_batch_size(make_model: Any) -> None:
    model = make_model()
    app = create_app(settings(max_client_batch_size=4, max_concurrent_requests=3), model)
    instances: list[dict[str, Any]] = [{"inputs": f"instance {i}"} for i in range(20)]
    instances.append({"inputs": ["pair a", "pair b", "pair c", "pair d"]})
    async with serve(app) as client:
        response = await client.post("/vertex", json={"instances": instances})
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        too_many = await client.post(
            "/vertex", json={"instances": [*instances[:5], {"inputs": texts_of(9, 5)}]}
        )
    assert len(predictions) == 21
    for instance, prediction in zip(instances, predictions, strict=True):
        texts = instance["inputs"] if isinstance(instance["inputs"], list) else [instance["inputs"]]
        for text, vector in zip(texts, prediction, strict=True):
            np.testing.assert_allclose(
                vector, reference_embedding(model, text), rtol=1e-4, atol=1e-5
            )
    assert too_many.status_code == 422  # each instance is bounded, as in TEI
    assert "batch size 5 > maximum allowed batch size 4" in too_many.json()["error"]
    assert app.state.infer.permits.free == 3


async def test_a_vertex_body_waits_its_turn_and_younger_requests_wait_for_it(
    make_model: Any,
) -> None:
    model = make_model()
    app = create_app(settings(max_concurrent_requests=4, max_batch_requests=4), model)
    async with serve(app) as client:
        runs = Runs(model)
        infer = app.state.infer
        older = asyncio.ensure_future(client.post("/embed", json={"inputs": texts_of(0, 6)}))
        await until(runs.started.is_set)
        body = {"instances": [{"inputs": f"request 1 instance {i}"} for i in range(12)]}
        await until(lambda: infer.permits.waiting == 1)  # the older one waits for 2 more
        vertex = asyncio.ensure_future(client.post("/vertex", json=body))
        await until(lambda: infer.permits.waiting == 13)
        younger = asyncio.ensure_future(client.post("/embed", json={"inputs": texts_of(2, 3)}))
        await until(lambda: infer.permits.waiting == 14)
        runs.gate.set()
        responses = [await older, await vertex, await younger]
    assert [r.status_code for r in responses] == [200, 200, 200]
    order = [request_of(text) for text in runs.flat()]
    assert order == [0] * 6 + [1] * 12 + [2] * 3, runs.texts
    assert infer.permits.free == 4


async def test_a_failing_vertex_instance_cancels_the_waiting_others(make_model: Any) -> None:
    model = make_model(fail_on_token=2088)  # "world"
    app = create_app(settings(max_concurrent_requests=2, max_batch_requests=1), model)
    instances = [{"inputs": "hello world"}] + [{"inputs": f"request 1 n {i}"} for i in range(8)]
    async with serve(app) as client:
        started = len(model.engine.calls)  # the start-up probe and calibration runs
        response = await client.post("/vertex", json={"instances": instances})
        assert response.status_code == 424
        await until(lambda: app.state.infer.permits.free == 2)
        assert app.state.infer.permits.waiting == 0
    ran = model.engine.calls[started:]  # one input per run
    assert len(ran) < len(instances), ran  # the instances after the failure were not run


async def test_max_queue_wait_answers_a_whole_vertex_body(make_model: Any) -> None:
    model = make_model()
    app = create_app(settings(max_concurrent_requests=2, max_queue_wait=0.2), model)
    async with serve(app) as client:
        runs = Runs(model)
        holding = asyncio.ensure_future(client.post("/embed", json={"inputs": texts_of(0, 2)}))
        await until(runs.started.is_set)
        body = {"instances": [{"inputs": f"request 1 instance {i}"} for i in range(5)]}
        response = await client.post("/vertex", json=body)
        assert response.status_code == 429
        assert response.json() == {"error": "Model is overloaded", "error_type": "Overloaded"}
        runs.gate.set()
        assert (await holding).status_code == 200
        await until(lambda: app.state.infer.permits.free == 2)
    assert not [t for t in runs.flat() if t.startswith("request 1 ")], runs.texts
