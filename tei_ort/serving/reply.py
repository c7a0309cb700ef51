"""A handled request's answer and timings, shared by the HTTP and gRPC front ends."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from tei_ort.serving.infer import Outcome
from tei_ort.serving.metrics import Metrics


@dataclass
class Reply:
    """An answer and, for inference requests, the numbers behind TEI's ``x-*`` headers.

    ``content`` is protocol-neutral (numpy arrays, lists, tuples): each front end turns it
    into its own body or message.
    """

    content: Any
    started: float
    chars: int = 0
    tokens: int = 0
    tokenization: float = 0.0
    queue: float = 0.0
    inference: float = 0.0
    timed: bool = False

    def headers(self, compute_type: str) -> dict[str, str]:
        if not self.timed:
            return {}
        elapsed = str(int((time.perf_counter() - self.started) * 1000))
        return {
            "x-compute-type": compute_type,
            "x-compute-time": elapsed,
            "x-compute-characters": str(self.chars),
            "x-compute-tokens": str(self.tokens),
            "x-total-time": elapsed,
            "x-tokenization-time": str(int(self.tokenization * 1000)),
            "x-queue-time": str(int(self.queue * 1000)),
            "x-inference-time": str(int(self.inference * 1000)),
        }


def record_success(metrics: Metrics, reply: Reply, outcome: Outcome, method: str) -> Reply:
    """Fill ``reply``'s timings from ``outcome`` and record the request as TEI does
    (``te_request_success`` and the ``te_request_*`` durations)."""
    reply.tokens = outcome.prompt_tokens
    reply.tokenization = outcome.tokenization
    reply.queue = outcome.queue
    reply.inference = outcome.inference
    reply.timed = True
    metrics.request_success.labels(method=method).inc()
    metrics.request.observe(
        time.perf_counter() - reply.started,
        outcome.tokenization,
        outcome.queue,
        outcome.inference,
    )
    return reply
