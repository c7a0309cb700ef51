"""No work outlives its request: when a request fails in any part, or its client goes away,
every input it queued leaves the queue and gives its permit back at once; and each /vertex
instance has at most --max-client-batch-size inputs (any number of instances, as TEI)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc
import httpx
import pytest

from tei_ort.errors import BatchSizeError, EmptyError
from tei_ort.grpc.server import GrpcServer
from tei_ort.http.app import create_app
from tei_ort.proto import tei_pb2 as pb
from tei_ort.proto import tei_pb2_grpc as rpc
from tei_ort.serving.infer import Infer
from tests.support.app import FakeModel, grpc_on_free_port, serve, settings, until

pytestmark = pytest.mark.anyio

#: what "at once" means here: well under the seconds the abandoned work would take
IDLE_WITHIN_S = 1.0


def queue_size(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith("te_queue_size "):
            return float(line.split()[-1])
    raise AssertionError("te_queue_size is missing")


async def wait_idle(infer: Infer, client: httpx.AsyncClient) -> float:
    """Seconds until the queue is empty and every permit is free (raises after the bound)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while loop.time() - started < IDLE_WITHIN_S:
        idle = infer.permits.free == infer.permits.total and len(infer.queue) == 0
        if idle and queue_size((await client.get("/metrics")).text) == 0:
            return loop.time() - started
        await asyncio.sleep(0.01)
    raise AssertionError(
        f"not idle after {IDLE_WITHIN_S}s: {len(infer.queue)} queued, "
        f"{infer.permits.total - infer.permits.free} permits held"
    )


def texts(count: int, tag: int) -> list[str]:
    return [f"instance {tag} text {i} about something" for i in range(count)]


async def test_failing_vertex_instance_cancels_the_others(make_model: Any) -> None:
    # 300 x 32 inputs at ~0.5 ms per run of 8: ~10 s of work nobody would read
    model = make_model(delay_s=0.005)
    config = settings(max_client_batch_size=20_000, max_batch_requests=8)
    app = create_app(config, model)
    body = {"instances": [{"inputs": ""}] + [{"inputs": texts(32, i)} for i in range(300)]}
    async with serve(app) as client:
        response = await client.post("/vertex", json=body)
        assert response.status_code == EmptyError.status_code, response.text
        await wait_idle(app.state.infer, client)
        runs = len(model.engine.calls)
        await asyncio.sleep(0.2)
        assert len(model.engine.calls) <= runs + 1  # the engine has stopped (one run may end)
        # other clients are not refused: every permit is free again
        answers = await asyncio.gather(
            *(client.post("/embed", json={"inputs": f"other {i}"}) for i in range(20))
        )
        assert [a.status_code for a in answers] == [200] * 20


async def test_vertex_instances_are_bounded_by_max_client_batch_size(make_model: Any) -> None:
    app = create_app(settings(max_client_batch_size=32), make_model())
    async with serve(app) as client:
        fits = {"instances": [{"inputs": texts(32, i)} for i in range(32)]}
        response = await client.post("/vertex", json=fits)
        assert response.status_code == 200, response.text
        assert [len(p) for p in response.json()["predictions"]] == [32] * 32
        singles = {"instances": [{"inputs": f"one {i}"} for i in range(33)]}
        response = await client.post("/vertex", json=singles)  # TEI bounds only each instance
        assert response.status_code == 200 and len(response.json()["predictions"]) == 33
        too_big = {"instances": [{"inputs": texts(33, 0)}]}
        response = await client.post("/vertex", json=too_big)
        assert response.status_code == BatchSizeError.status_code, response.text
        assert "33" in response.json()["error"] and "32" in response.json()["error"]
        assert (await client.post("/vertex", json={"instances": []})).json() == {"predictions": []}
        assert len(app.state.infer.queue) == 0


async def test_client_gone_mid_batch_frees_everything_at_once(make_model: Any) -> None:
    model = make_model(delay_s=0.05)  # 8 batches of 4: 0.4 s of work if nothing is dropped
    app = create_app(settings(max_batch_requests=4), model)
    async with serve(app) as client:
        started = len(model.engine.calls)  # the start-up probe
        request = client.post("/embed", json={"inputs": texts(32, 0)})
        task = asyncio.ensure_future(request)
        await until(lambda: len(model.engine.calls) >= started + 2, "two batches ran")
        task.cancel()  # the client goes away while its inputs are queued
        runs = len(model.engine.calls)
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await wait_idle(app.state.infer, client)
        # the queued batches never ran: at most the one the engine had begun ended
        assert len(model.engine.calls) <= runs + 1, (runs - started, len(model.engine.calls))


@contextlib.asynccontextmanager
async def grpc_app(model: FakeModel, **overrides: Any) -> AsyncIterator[tuple[Any, Any, Any]]:
    config = settings(**overrides)
    started: list[GrpcServer] = []

    app = create_app(config, model, companions=[grpc_on_free_port(config, started)])
    async with (
        serve(app) as client,
        grpc.aio.insecure_channel(f"127.0.0.1:{started[0].port}") as channel,
    ):
        yield app, client, channel


async def messages(requests: Iterable[Any]) -> AsyncIterator[Any]:
    for request in requests:
        yield request
        await asyncio.sleep(0)


async def test_failed_grpc_streams_leave_nothing_queued(make_model: Any) -> None:
    model = make_model("reranker", delay_s=0.005)
    async with grpc_app(model, max_batch_requests=4) as (app, client, channel):
        infer = app.state.infer
        # RerankStream: one message fails (too long) while the others are queued
        rerank = [pb.RerankStreamRequest(query="q", text=f"text {i}") for i in range(200)]
        rerank.insert(100, pb.RerankStreamRequest(query="q", text="word " * 600))  # too long
        with pytest.raises(grpc.aio.AioRpcError):
            await rpc.RerankStub(channel).RerankStream(messages(rerank))
        await wait_idle(infer, client)
        # PredictStream: the same, in a bidirectional stream
        predict = [pb.PredictRequest(inputs=f"text {i}") for i in range(200)]
        predict.insert(3, pb.PredictRequest(inputs=""))
        with pytest.raises(grpc.aio.AioRpcError):
            async for _ in rpc.PredictStub(channel).PredictStream(messages(predict)):
                pass
        await wait_idle(infer, client)
        response = await rpc.PredictStub(channel).Predict(pb.PredictRequest(inputs="after"))
        assert len(response.predictions) == 1
