"""TEI's Prometheus metrics: the same ``te_*`` names, labels and buckets.

Values live in ``prometheus_client`` objects (thread-safe, one registry per app so tests
can build many apps). The text rendering is our own because TEI's exporter names counters
without the ``_total`` suffix that ``prometheus_client`` adds, and dashboards built on TEI
query ``te_request_count``, not ``te_request_count_total``.

Buckets as TEI sets them: durations start at 1.5e-5 s and grow x1.5 (35 buckets); input
lengths are powers of two up to the maximum input length; batch sizes 2^0..2^12; batch
tokens 2^0..2^20.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.utils import floatToGoString

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


#: ``te_request_failure`` ``err`` label values, as TEI uses them
def duration_buckets() -> tuple[float, ...]:
    value = 0.00001
    buckets = []
    for _ in range(35):
        value *= 1.5
        buckets.append(value)
    return tuple(buckets)


def input_length_buckets(max_input_length: int) -> tuple[float, ...]:
    buckets = tuple(float(2**x) for x in range(20) if 2**x <= max_input_length)
    return buckets or (1.0,)


BATCH_SIZE_BUCKETS = tuple(float(2**x) for x in range(13))
BATCH_TOKENS_BUCKETS = tuple(float(2**x) for x in range(21))


class _Stage:
    """The four duration histograms of one stage prefix (te_request / te_embed / te_predict)."""

    def __init__(self, prefix: str, registry: CollectorRegistry) -> None:
        buckets = duration_buckets()

        def hist(name: str, doc: str) -> Histogram:
            return Histogram(name, doc, registry=registry, buckets=buckets)

        self.duration = hist(f"{prefix}_duration", "Total time, in seconds")
        self.tokenization = hist(f"{prefix}_tokenization_duration", "Tokenization time, seconds")
        self.queue = hist(f"{prefix}_queue_duration", "Time spent queued, in seconds")
        self.inference = hist(f"{prefix}_inference_duration", "Inference time, in seconds")

    def observe(self, total: float, tokenization: float, queue: float, inference: float) -> None:
        self.duration.observe(total)
        self.tokenization.observe(tokenization)
        self.queue.observe(queue)
        self.inference.observe(inference)


class Metrics:
    """Every ``te_*`` series, in one registry."""

    def __init__(self, max_input_length: int = 512) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.request_count = Counter(
            "te_request_count", "Requests received", ["method"], registry=registry
        )
        self.request_success = Counter(
            "te_request_success", "Requests answered successfully", ["method"], registry=registry
        )
        self.request_failure = Counter(
            "te_request_failure", "Failed requests by cause", ["err"], registry=registry
        )
        self.embed_count = Counter("te_embed_count", "Embedding inputs", registry=registry)
        self.embed_success = Counter(
            "te_embed_success", "Embedding inputs answered", registry=registry
        )
        self.predict_count = Counter("te_predict_count", "Prediction inputs", registry=registry)
        self.predict_success = Counter(
            "te_predict_success", "Prediction inputs answered", registry=registry
        )
        self.queue_size = Gauge("te_queue_size", "Entries waiting in the queue", registry=registry)
        self.request = _Stage("te_request", registry)
        self.embed = _Stage("te_embed", registry)
        self.predict = _Stage("te_predict", registry)
        self.input_length = Histogram(
            "te_request_input_length",
            "Tokens per input",
            registry=registry,
            buckets=input_length_buckets(max_input_length),
        )
        self.batch_next_size = Histogram(
            "te_batch_next_size", "Entries per batch", registry=registry, buckets=BATCH_SIZE_BUCKETS
        )
        self.batch_next_tokens = Histogram(
            "te_batch_next_tokens",
            "Tokens per batch (before padding)",
            registry=registry,
            buckets=BATCH_TOKENS_BUCKETS,
        )

    def failure(self, label: str, amount: int = 1) -> None:
        self.request_failure.labels(err=label).inc(amount)

    def render(self) -> bytes:
        """The Prometheus text format, with TEI's series names."""
        return render_registries([(self.registry, {})])


class Renderable(Protocol):
    """What /metrics and the Prometheus listener serve: ``Metrics`` or several models'."""

    def render(self) -> bytes: ...


def render_registries(parts: Sequence[tuple[CollectorRegistry, dict[str, str]]]) -> bytes:
    """The Prometheus text format of several registries with the same families (one per
    served model), each sample with its registry's extra labels; HELP / TYPE once each."""
    families: dict[str, list[tuple[Any, dict[str, str]]]] = {}
    for registry, extra in parts:
        for family in registry.collect():
            families.setdefault(family.name, []).append((family, extra))
    lines: list[str] = []
    for name, members in families.items():
        kind = members[0][0].type
        lines.append(f"# HELP {name} {members[0][0].documentation}")
        lines.append(f"# TYPE {name} {kind}")
        for family, extra in members:
            for sample in family.samples:
                sample_name = sample.name
                if sample_name.endswith("_created"):
                    continue
                if kind == "counter" and sample_name.endswith("_total"):
                    sample_name = sample_name[: -len("_total")]
                labels = ""
                sample_labels = {**sample.labels, **extra}
                if sample_labels:
                    inner = ",".join(
                        f'{key}="{_escape(value)}"' for key, value in sorted(sample_labels.items())
                    )
                    labels = "{" + inner + "}"
                lines.append(f"{sample_name}{labels} {_number(sample.value)}")
    lines.append("")
    return "\n".join(lines).encode("utf-8")


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _number(value: float) -> str:
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return str(floatToGoString(value))  # type: ignore[no-untyped-call]


class PrometheusListener:
    """The ``--prometheus-port`` listener: /metrics (any path) on its own port, in a thread."""

    def __init__(self, metrics: Renderable, host: str, port: int) -> None:
        render = metrics.render

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = render()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        # TEI binds the metrics port on the --hostname address, as the main port
        server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
        self._server = server_class((host, port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="tei-ort-prometheus", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def start_prometheus_listener(
    metrics: Renderable, host: str, port: int
) -> PrometheusListener | None:
    """Start the listener; an address in use (or any bind error) is a warning (TEI fails to
    start; tei-ort keeps serving, with /metrics on the main port)."""
    try:
        listener = PrometheusListener(metrics, host, port)
    except OSError as exc:
        logger.warning("could not start the Prometheus listener on %s:%d: %s", host, port, exc)
        return None
    logger.info("Prometheus metrics on http://%s:%d/metrics", host, listener.port)
    return listener
