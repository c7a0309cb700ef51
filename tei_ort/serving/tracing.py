"""OpenTelemetry tracing: one span per request, children for tokenization, queue and inference.

On with ``--otlp-endpoint`` (spans exported over OTLP/gRPC, ``service.name`` =
``--otlp-service-name``) unless ``--disable-spans``. Off, ``setup_tracing`` returns None and
the request path creates no span objects at all: every call site holds a ``Tracer | None``
and checks it once (no HTTP middleware is installed, Infer keeps no per-request records).

::

    POST /embed  or  tei.v1.Embed/Embed        SERVER; parent: the caller's W3C traceparent
    ├── tokenize                                tei.input_count, tei.tokens
    ├── queue                                   first input queued -> its first batch starts
    └── inference (one per batch it was in)     tei.batch_size, tei.batch_tokens, tei.inputs

Queue and inference happen on the batcher and engine threads for many requests at once, so
their spans are written afterwards, on the event loop, from the timestamps Infer records
(``RequestTrace``); the request span is the current span (a contextvar) while the front end
awaits Infer.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tei_ort.settings import Settings

#: the name of the instrumentation scope of every span tei-ort writes
SCOPE = "tei_ort"
_PROPAGATOR = TraceContextTextMapPropagator()


@dataclass
class BatchMark:
    """One engine batch that carried some of a request's inputs."""

    started: float  # perf_counter seconds
    ended: float
    size: int  # entries in the batch (all requests)
    tokens: int  # real tokens in the batch
    inputs: int  # this request's entries in it


class RequestTrace:
    """What a traced request's inputs went through; filled by ``Infer`` on the event loop."""

    __slots__ = ("batches", "queued")

    def __init__(self) -> None:
        self.queued: float | None = None  # the earliest enqueue of its inputs
        self.batches: dict[float, BatchMark] = {}  # keyed by batch start

    def add(self, queued_at: float, started: float, ended: float, size: int, tokens: int) -> None:
        if self.queued is None or queued_at < self.queued:
            self.queued = queued_at
        mark = self.batches.get(started)
        if mark is None:
            self.batches[started] = BatchMark(started, ended, size, tokens, 1)
        else:
            mark.inputs += 1


class Tracer:
    """tei-ort's spans over an OpenTelemetry SDK provider of its own (not the global one)."""

    def __init__(
        self,
        exporter: SpanExporter,
        service_name: str = "text-embeddings-inference.server",
        *,
        batch: bool = True,
    ) -> None:
        self.provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
        processor: SpanProcessor = (
            BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        )
        self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer(SCOPE)
        # perf_counter (what Infer measures with) -> Unix-epoch nanoseconds (what spans hold)
        self._offset_ns = time.time_ns() - time.perf_counter_ns()

    def shutdown(self) -> None:
        """Export what is left and stop."""
        self.provider.shutdown()

    # -- request spans ---------------------------------------------------------------------

    def start_request(
        self,
        name: str,
        carrier: Mapping[str, str],
        attributes: Mapping[str, Any] | None = None,
    ) -> Span:
        """A SERVER span whose parent is the caller's ``traceparent`` in ``carrier``, if any."""
        parent = _PROPAGATOR.extract(carrier) if "traceparent" in carrier else None
        return self.tracer.start_span(
            name, context=parent, kind=SpanKind.SERVER, attributes=attributes
        )

    @staticmethod
    def activate(span: Span) -> object:
        """Make ``span`` the current span of this task; give the token to ``deactivate``."""
        return otel_context.attach(trace.set_span_in_context(span))

    @staticmethod
    def deactivate(token: object) -> None:
        otel_context.detach(token)  # type: ignore[arg-type]

    @staticmethod
    def current() -> Span | None:
        """The request span Infer's children go under (None when no span is recording)."""
        span = trace.get_current_span()
        return span if span.is_recording() else None

    @staticmethod
    def fail(span: Span, exc: BaseException, error_type: str | None = None) -> None:
        span.set_status(Status(StatusCode.ERROR, str(exc)))
        if error_type is not None:
            span.set_attribute("error.type", error_type)

    # -- children, written after the fact -------------------------------------------------

    def _ns(self, perf_seconds: float) -> int:
        return int(perf_seconds * 1e9) + self._offset_ns

    def child(
        self,
        parent: Span,
        name: str,
        start: float,
        end: float,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        """A finished INTERNAL span under ``parent`` from ``start`` to ``end`` (perf_counter)."""
        span = self.tracer.start_span(
            name,
            context=trace.set_span_in_context(parent),
            attributes=attributes,
            start_time=self._ns(start),
        )
        span.end(end_time=self._ns(max(start, end)))

    def finish_request(
        self,
        span: Span,
        record: RequestTrace | None,
        *,
        tokenize: tuple[float, float] | None,
        inputs: int,
        tokens: int | None,
    ) -> None:
        """The tokenize / queue / inference children of ``span`` and its token counts."""
        span.set_attribute("tei.input_count", inputs)
        if tokenize is not None:
            attributes: dict[str, Any] = {"tei.input_count": inputs}
            if tokens is not None:
                attributes["tei.tokens"] = tokens
            self.child(span, "tokenize", tokenize[0], tokenize[1], attributes)
        if record is None or record.queued is None or not record.batches:
            return
        marks = sorted(record.batches.values(), key=lambda mark: mark.started)
        self.child(span, "queue", record.queued, marks[0].started)
        for mark in marks:
            self.child(
                span,
                "inference",
                mark.started,
                mark.ended,
                {
                    "tei.batch_size": mark.size,
                    "tei.batch_tokens": mark.tokens,
                    "tei.inputs": mark.inputs,
                },
            )
        if tokens is not None:
            span.set_attribute("tei.prompt_tokens", tokens)


def setup_tracing(settings: Settings) -> Tracer | None:
    """The tracer ``settings`` ask for: OTLP/gRPC export to ``--otlp-endpoint``, or None."""
    if not settings.otlp_endpoint or settings.disable_spans:
        return None
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    endpoint = settings.otlp_endpoint
    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=not endpoint.startswith("https://"))
    return Tracer(exporter, settings.otlp_service_name)


def metadata_carrier(pairs: Iterable[tuple[str, Any]] | None) -> dict[str, str]:
    """gRPC invocation metadata -> a propagation carrier (text values, lower-case keys)."""
    carrier: dict[str, str] = {}
    for key, value in pairs or ():
        if isinstance(value, str):
            carrier[key.lower()] = value
    return carrier


class TracingMiddleware:
    """HTTP: one SERVER span per request, the caller's ``traceparent`` as its parent.

    Installed only when tracing is on, so the untraced HTTP path runs no code of this.
    """

    def __init__(self, app: ASGIApp, tracer: Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in (b"traceparent", b"tracestate")
        }
        method, path = scope["method"], scope["path"]
        span = self.tracer.start_request(
            f"{method} {path}",
            carrier,
            {"http.request.method": method, "url.path": path, "http.route": path},
        )
        token = self.tracer.activate(span)

        async def send_traced(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = int(message["status"])
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
            await send(message)

        try:
            await self.app(scope, receive, send_traced)
        except BaseException as exc:
            Tracer.fail(span, exc)
            raise
        finally:
            self.tracer.deactivate(token)
            span.end()
