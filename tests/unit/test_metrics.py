"""TEI's metric names, labels and buckets, and the text rendering."""

from __future__ import annotations

import itertools
import urllib.request

import pytest

from tei_ort.serving.metrics import (
    BATCH_SIZE_BUCKETS,
    BATCH_TOKENS_BUCKETS,
    Metrics,
    duration_buckets,
    input_length_buckets,
    start_prometheus_listener,
)

TEI_SERIES = [
    "te_request_count",
    "te_request_success",
    "te_request_failure",
    "te_embed_count",
    "te_embed_success",
    "te_predict_count",
    "te_predict_success",
    "te_queue_size",
    "te_request_duration",
    "te_request_tokenization_duration",
    "te_request_queue_duration",
    "te_request_inference_duration",
    "te_embed_duration",
    "te_embed_tokenization_duration",
    "te_embed_queue_duration",
    "te_embed_inference_duration",
    "te_predict_duration",
    "te_predict_tokenization_duration",
    "te_predict_queue_duration",
    "te_predict_inference_duration",
    "te_request_input_length",
    "te_batch_next_size",
    "te_batch_next_tokens",
]


def test_buckets_are_teis() -> None:
    durations = duration_buckets()
    assert len(durations) == 35
    assert durations[0] == pytest.approx(1.5e-5)
    assert all(b / a == pytest.approx(1.5) for a, b in itertools.pairwise(durations))
    assert input_length_buckets(512) == tuple(float(2**i) for i in range(10))
    assert BATCH_SIZE_BUCKETS[-1] == 4096.0 and len(BATCH_SIZE_BUCKETS) == 13
    assert BATCH_TOKENS_BUCKETS[-1] == 2.0**20 and len(BATCH_TOKENS_BUCKETS) == 21


def test_every_series_is_rendered_with_tei_names() -> None:
    metrics = Metrics(max_input_length=256)
    metrics.request_count.labels(method="single").inc()
    metrics.request_success.labels(method="batch").inc(2)
    metrics.failure("overloaded")
    metrics.request.observe(0.1, 0.01, 0.02, 0.03)
    metrics.input_length.observe(7)
    text = metrics.render().decode()
    for name in TEI_SERIES:
        assert f"# TYPE {name} " in text, name
    assert 'te_request_count{method="single"} 1\n' in text
    assert 'te_request_success{method="batch"} 2\n' in text
    assert 'te_request_failure{err="overloaded"} 1\n' in text
    assert "_total" not in text and "_created" not in text
    assert "# TYPE te_request_count counter" in text
    assert "# TYPE te_queue_size gauge" in text
    assert "# TYPE te_request_duration histogram" in text
    assert "te_request_duration_count 1\n" in text
    assert 'te_request_input_length_bucket{le="8.0"} 1' in text
    assert 'te_request_input_length_bucket{le="+Inf"} 1' in text


def test_apps_have_separate_registries() -> None:
    a, b = Metrics(), Metrics()
    a.embed_count.inc()
    assert "te_embed_count 0\n" in b.render().decode()


def test_prometheus_listener_serves_and_tolerates_a_used_port(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    metrics.embed_count.inc(3)
    listener = start_prometheus_listener(metrics, "127.0.0.1", 0)
    assert listener is not None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{listener.port}/metrics") as response:
            assert response.status == 200
            assert b"te_embed_count 3\n" in response.read()
        assert start_prometheus_listener(metrics, "127.0.0.1", listener.port) is None
        assert "could not start the Prometheus listener" in caplog.text
    finally:
        listener.close()
