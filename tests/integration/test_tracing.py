"""Tracing through the servers: span trees for HTTP and gRPC requests with the caller's W3C
traceparent, batch attributes, the untraced path, and a real process exporting over
OTLP/gRPC to a collector implemented here (opentelemetry-proto's TraceService)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from typing import Any

import grpc
import httpx
import orjson
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tei_ort.grpc.server import GrpcServer
from tei_ort.http.app import create_app
from tei_ort.proto import tei_pb2 as pb
from tei_ort.proto import tei_pb2_grpc as rpc
from tei_ort.serving.infer import Infer
from tei_ort.serving.tracing import Tracer, TracingMiddleware
from tests.support.app import FakeModel, grpc_on_free_port, serve, settings, until
from tests.support.process import ServerProcess

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@contextlib.asynccontextmanager
async def traced(
    model: FakeModel, tracer: Tracer | None
) -> AsyncIterator[tuple[httpx.AsyncClient, grpc.aio.Channel, Infer]]:
    config = settings()
    started: list[GrpcServer] = []

    app = create_app(config, model, tracer=tracer, companions=[grpc_on_free_port(config, started)])
    async with serve(app) as client:
        target = f"127.0.0.1:{started[0].port}"
        async with grpc.aio.insecure_channel(target) as channel:
            yield client, channel, app.state.infer


def _by_trace(spans: tuple[ReadableSpan, ...], trace_id: int) -> list[ReadableSpan]:
    return [s for s in spans if s.context is not None and s.context.trace_id == trace_id]


def _children(spans: list[ReadableSpan], parent: ReadableSpan) -> dict[str, list[ReadableSpan]]:
    assert parent.context is not None
    out: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        if span.parent is not None and span.parent.span_id == parent.context.span_id:
            out.setdefault(span.name, []).append(span)
    return out


@pytest.mark.anyio
async def test_http_and_grpc_requests_get_span_trees_under_the_callers_trace(
    make_model: Any,
) -> None:
    exporter = InMemorySpanExporter()
    tracer = Tracer(exporter, batch=False)
    model = make_model("embedding")
    gate = threading.Event()
    async with traced(model, tracer) as (http, channel, _):
        model.engine.on_run = lambda inputs: gate.wait(5.0)
        started = len(model.engine.calls)  # the start-up probe and calibration runs
        headers = {"traceparent": TRACEPARENT}
        # the first request runs alone (held); a two-input request queued behind it is
        # appended at once, so its inputs form one batch of two whatever the timing
        first = asyncio.ensure_future(http.post("/embed", json={"inputs": "one"}, headers=headers))
        await until(lambda: len(model.engine.calls) > started, "the engine holds 'one'")
        others = [
            asyncio.ensure_future(
                http.post("/embed", json={"inputs": ["two", "three"]}, headers=headers)
            )
        ]
        gate.set()
        responses = [await first, *[await o for o in others]]
        assert all(r.status_code == 200 for r in responses)
        metadata = (("traceparent", TRACEPARENT),)
        stub = rpc.EmbedStub(channel)
        await stub.Embed(pb.EmbedRequest(inputs="grpc"), metadata=metadata)

        async def two() -> AsyncIterator[pb.EmbedRequest]:
            for text in ("s1", "s2"):
                yield pb.EmbedRequest(inputs=text)

        assert len([r async for r in stub.EmbedStream(two(), metadata=metadata)]) == 2
        failed = await http.post("/embed", json={"inputs": ""}, headers=headers)
        assert failed.status_code == 400
        untraced = await http.post("/embed", json={"inputs": "root"})
        assert untraced.status_code == 200
    batch_sizes = [size for size, _ in model.engine.calls[started:]]
    spans = _by_trace(exporter.get_finished_spans(), int(TRACE_ID, 16))
    requests = [s for s in spans if s.parent is not None and s.parent.span_id == int(PARENT_ID, 16)]
    names = sorted(s.name for s in requests)
    assert names == [
        "POST /embed",
        "POST /embed",
        "POST /embed",
        "tei.v1.Embed/Embed",
        "tei.v1.Embed/EmbedStream",
        "tei.v1.Embed/EmbedStream",
    ]
    recorded_sizes = []
    for request in requests:
        attributes = dict(request.attributes or {})
        children = _children(spans, request)
        if attributes.get("http.response.status_code") == 400:
            assert set(children) == {"tokenize"}  # refused while tokenizing
            continue
        assert set(children) == {"tokenize", "queue", "inference"}, request.name
        (tokenize,) = children["tokenize"]
        (queue,) = children["queue"]
        (inference,) = children["inference"]
        assert tokenize.end_time is not None and queue.start_time is not None
        assert inference.start_time is not None and queue.end_time == inference.start_time
        assert attributes["tei.prompt_tokens"] == (tokenize.attributes or {})["tei.tokens"] > 0
        size = (inference.attributes or {})["tei.batch_size"]
        recorded_sizes.append(size)
        if request.name.startswith("tei.v1"):
            assert attributes["rpc.system"] == "grpc"
            assert attributes["rpc.grpc.status_code"] == 0
        else:
            assert attributes["http.response.status_code"] == 200
    assert 2 in recorded_sizes and set(recorded_sizes) <= set(batch_sizes)
    # the request without a traceparent started a trace of its own
    roots = [s for s in exporter.get_finished_spans() if s.name == "POST /embed" and not s.parent]
    assert len(roots) == 1


@pytest.mark.anyio
async def test_grpc_errors_are_recorded_on_the_span(make_model: Any) -> None:
    exporter = InMemorySpanExporter()
    async with traced(make_model("embedding"), Tracer(exporter, batch=False)) as (_, channel, _i):
        with pytest.raises(grpc.aio.AioRpcError):
            await rpc.EmbedStub(channel).Embed(pb.EmbedRequest(inputs=""))
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "tei.v1.Embed/Embed"]
    assert span.status.is_ok is False
    attributes = dict(span.attributes or {})
    assert attributes["error.type"] == "Empty"
    assert attributes["rpc.grpc.status_code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]


@pytest.mark.anyio
async def test_untraced_servers_create_no_spans(make_model: Any) -> None:
    async with traced(make_model("embedding"), None) as (http, channel, infer):
        created: list[Any] = []
        original = Tracer.start_request
        Tracer.start_request = lambda *a, **k: created.append(a)  # type: ignore[method-assign]
        try:
            headers = {"traceparent": TRACEPARENT}
            assert (await http.post("/embed", json={"inputs": "x"}, headers=headers)).is_success
            metadata = (("traceparent", TRACEPARENT),)
            await rpc.EmbedStub(channel).Embed(pb.EmbedRequest(inputs="x"), metadata=metadata)
        finally:
            Tracer.start_request = original  # type: ignore[method-assign]
        assert infer.tracer is None and not infer._traced
    assert created == []
    app = create_app(settings(), make_model("embedding"))
    assert not any(m.cls is TracingMiddleware for m in app.user_middleware)


class Collector(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    """A tiny OTLP/gRPC trace receiver: keeps every ExportTraceServiceRequest."""

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.lock = threading.Lock()

    def Export(self, request: Any, context: Any) -> Any:
        with self.lock:
            self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """(resource attributes, span) for every span received."""
        out = []
        with self.lock:
            for request in self.requests:
                for resource_spans in request.resource_spans:
                    resource = {
                        a.key: a.value.string_value for a in resource_spans.resource.attributes
                    }
                    for scope in resource_spans.scope_spans:
                        out.extend((resource, span) for span in scope.spans)
        return out


@pytest.fixture
def collector() -> Iterator[tuple[Collector, int]]:
    receiver = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield receiver, port
    finally:
        server.stop(None)


def test_real_server_exports_spans_over_otlp(
    tmp_path: Any, collector: tuple[Collector, int]
) -> None:
    receiver, otlp_port = collector
    server = ServerProcess(
        [
            *("--grpc-port", "0", "--engine-cache", str(tmp_path / "engines")),
            *("--otlp-endpoint", f"http://127.0.0.1:{otlp_port}"),
            *("--otlp-service-name", "tei-test", "--json-output"),
        ],
        log=tmp_path / "server.log",
        env={"OTEL_BSP_SCHEDULE_DELAY": "100"},
    )
    try:
        headers = {"traceparent": TRACEPARENT}
        ok = httpx.post(f"{server.url}/embed", json={"inputs": "hello"}, headers=headers)
        assert ok.status_code == 200, ok.text
        empty = httpx.post(f"{server.url}/embed", json={"inputs": ""}, headers=headers)
        assert empty.status_code == 400, empty.text  # a failed request is traced too
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            metadata = (("traceparent", TRACEPARENT),)
            rpc.EmbedStub(channel).Embed(pb.EmbedRequest(inputs="hello"), metadata=metadata)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = [s for _, s in receiver.spans() if s.trace_id.hex() == TRACE_ID]
            if len(found) >= 3 + 3 + 1:  # two full trees and the failed request's tokenize
                names = {s.name for s in found}
                if {"POST /embed", "tei.v1.Embed/Embed"} <= names and len(found) >= 9:
                    break
            time.sleep(0.1)
    finally:
        assert server.stop() == 0
    spans = [(r, s) for r, s in receiver.spans() if s.trace_id.hex() == TRACE_ID]
    assert spans, server.output()
    assert {resource["service.name"] for resource, _ in spans} == {"tei-test"}
    requests = [s for _, s in spans if s.parent_span_id.hex() == PARENT_ID]
    assert sorted(s.name for s in requests) == ["POST /embed", "POST /embed", "tei.v1.Embed/Embed"]
    for request in requests:
        children = {s.name for _, s in spans if s.parent_span_id == request.span_id}
        assert children in ({"tokenize", "queue", "inference"}, {"tokenize"}), children
        if children == {"tokenize", "queue", "inference"}:
            (inference,) = [
                s for _, s in spans if s.parent_span_id == request.span_id and s.name == "inference"
            ]
            attributes = {a.key: a.value.int_value for a in inference.attributes}
            assert attributes["tei.batch_size"] == 1 and attributes["tei.batch_tokens"] == 3
    # --json-output: the failed request's error line carries the caller's trace id
    lines = [orjson.loads(line) for line in server.output().splitlines() if line.startswith("{")]
    errors = [line for line in lines if line["level"] == "ERROR"]
    assert errors and errors[0]["trace_id"] == TRACE_ID, errors
