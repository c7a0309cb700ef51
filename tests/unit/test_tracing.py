"""tracing.py: when tracing is on, span trees and the caller's traceparent; JSON log lines
with the trace id."""

from __future__ import annotations

import logging

import orjson
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tei_ort.log import JsonFormatter
from tei_ort.serving.tracing import RequestTrace, Tracer, metadata_carrier, setup_tracing
from tei_ort.settings import Settings

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


def _tracer() -> tuple[Tracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    return Tracer(exporter, "test-service", batch=False), exporter


def test_tracing_is_off_without_an_endpoint_or_with_disable_spans() -> None:
    assert setup_tracing(Settings()) is None
    assert setup_tracing(Settings(otlp_endpoint="http://127.0.0.1:1", disable_spans=True)) is None
    tracer = setup_tracing(Settings(otlp_endpoint="http://127.0.0.1:1", otlp_service_name="x"))
    assert tracer is not None
    assert tracer.provider.resource.attributes["service.name"] == "x"
    tracer.shutdown()


def test_request_span_keeps_the_callers_trace_and_gets_children() -> None:
    tracer, exporter = _tracer()
    span = tracer.start_request("POST /embed", {"traceparent": TRACEPARENT}, {"a": 1})
    record = RequestTrace()
    # two inputs in one batch of 3 (started at 2.0), one in a later batch of 1
    record.add(1.5, 2.0, 2.5, 3, 30)
    record.add(1.6, 2.0, 2.5, 3, 30)
    record.add(1.7, 3.0, 3.25, 1, 9)
    tracer.finish_request(span, record, tokenize=(1.0, 1.5), inputs=3, tokens=27)
    span.end()
    spans = {s.name: s for s in exporter.get_finished_spans() if s.name != "inference"}
    inference = [s for s in exporter.get_finished_spans() if s.name == "inference"]
    request = spans["POST /embed"]
    assert request.kind is SpanKind.SERVER
    assert format(request.context.trace_id, "032x") == TRACE_ID
    assert request.parent is not None and format(request.parent.span_id, "016x") == PARENT_ID
    assert request.attributes is not None
    assert request.attributes["tei.prompt_tokens"] == 27
    assert request.attributes["tei.input_count"] == 3
    assert request.resource.attributes["service.name"] == "test-service"
    for child in (spans["tokenize"], spans["queue"], *inference):
        assert child.parent is not None and child.parent.span_id == request.context.span_id
        assert child.context.trace_id == request.context.trace_id
    assert _duration(spans["tokenize"]) == 500_000_000
    assert _duration(spans["queue"]) == 500_000_000  # first queued 1.5 -> first batch 2.0
    assert spans["tokenize"].attributes == {"tei.input_count": 3, "tei.tokens": 27}
    by_size = sorted((dict(s.attributes or {}) for s in inference), key=lambda a: a["tei.inputs"])
    assert by_size == [
        {"tei.batch_size": 1, "tei.batch_tokens": 9, "tei.inputs": 1},
        {"tei.batch_size": 3, "tei.batch_tokens": 30, "tei.inputs": 2},
    ]
    assert sorted(_duration(s) for s in inference) == [250_000_000, 500_000_000]


def test_without_a_traceparent_the_request_span_is_a_root() -> None:
    tracer, exporter = _tracer()
    tracer.start_request("tei.v1.Embed/Embed", {}).end()
    (span,) = exporter.get_finished_spans()
    assert span.parent is None


def test_failed_tokenization_still_gets_a_tokenize_span_and_no_batches() -> None:
    tracer, exporter = _tracer()
    span = tracer.start_request("x", {})
    tracer.finish_request(span, RequestTrace(), tokenize=(1.0, 1.2), inputs=1, tokens=None)
    span.end()
    names = sorted(s.name for s in exporter.get_finished_spans())
    assert names == ["tokenize", "x"]


def test_metadata_carrier_keeps_text_values() -> None:
    carrier = metadata_carrier([("traceparent", TRACEPARENT), ("bin-bin", b"\x00")])
    assert carrier == {"traceparent": TRACEPARENT}
    assert metadata_carrier(None) == {}


def test_json_log_lines_carry_the_trace_id_inside_a_span() -> None:
    tracer, _ = _tracer()
    formatter = JsonFormatter()
    record = logging.LogRecord("tei_ort", logging.ERROR, __file__, 1, "boom", None, None)
    outside = orjson.loads(formatter.format(record))
    assert "trace_id" not in outside
    span = tracer.start_request("x", {"traceparent": TRACEPARENT})
    token = tracer.activate(span)
    try:
        inside = orjson.loads(formatter.format(record))
    finally:
        tracer.deactivate(token)
        span.end()
    assert inside["trace_id"] == TRACE_ID
    assert inside["span_id"] == format(span.get_span_context().span_id, "016x")
    assert inside["message"] == "boom" and inside["level"] == "ERROR"


def _duration(span: ReadableSpan) -> int:
    assert span.start_time is not None and span.end_time is not None
    return span.end_time - span.start_time
