"""A real ``tei-ort serve`` under a backlog: ~60 large requests at once finish in arrival
order, and SIGTERM in the middle answers every one of them (in that order) and exits 0.

The backlog is sized from this machine's own measured speed (one request timed alone),
not from a constant, so that it is long enough to order and short enough for CI on a
shared 2-core machine; completions are timed on the server's CPU clock (its work done), so
that other load on the machine does not skew where in the backlog each falls.
``--max-concurrent-requests`` is two requests' worth of texts, so
that most requests wait for permits (the admission rule under test), not only in the
batcher's queue; ``--max-batch-requests`` is one request's, so that requests finish one by
one rather than a batch-full at a time.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.backlog import (
    received,
    send_backlog,
    server_cpu_clock,
    sigterm_when_received,
    spearman,
    summary,
    texts,
    time_one,
    words_for,
)
from tei_ort.model.hub import default_model_path
from tests.support.process import SCRIPTS, ServerProcess

REQUESTS = 60
TEXTS = 32  # a request; also --max-batch-requests, so that a batch is one request's texts
WORDS = 150  # ~170 tokens a text, scaled down to the backlog wanted
#: seconds of work for the order test and the SIGTERM test (on this machine, as measured)
ORDER_BACKLOG_S = 12.0
SIGTERM_BACKLOG_S = 20.0


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One engine built for both servers (float32 ONNX Runtime, as ServerProcess serves)."""
    cache = tmp_path_factory.mktemp("overload") / "engines"
    env = {k: v for k, v in os.environ.items() if k not in ("ENGINE_CACHE", "MODEL_ID")}
    model = ("--model-id", str(default_model_path()))
    subprocess.run(
        [str(SCRIPTS / "tei-ort"), "build", *model, "--engine-cache", str(cache)],
        check=True,
        capture_output=True,
        env=env | {"HF_HUB_OFFLINE": "1", "DTYPE": "float32"},
        timeout=300,
    )
    return cache


@pytest.fixture(scope="module")
def measured(
    cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, float]]:
    """A server, and the seconds one request of TEXTS texts of WORDS words takes alone.

    One server for the module (a start and a measurement less, for CI): the SIGTERM test,
    last in this file, ends it."""
    args = ["--model-id", str(default_model_path()), "--engine-cache", str(cache)]
    args += ["--max-concurrent-requests", str(2 * TEXTS), "--max-batch-requests", str(TEXTS)]
    server = ServerProcess(args, log=tmp_path_factory.mktemp("overload-log") / "server.log")
    try:
        yield server, time_one(server.url, TEXTS, WORDS, repeats=2)
    finally:
        server.stop()


def _bodies(full_s: float, backlog_s: float) -> list[dict[str, list[str]]]:
    words = words_for(backlog_s / REQUESTS, full_s, WORDS)
    return [{"inputs": texts(i, TEXTS, words)} for i in range(REQUESTS)]


def test_a_backlog_finishes_in_arrival_order(measured: tuple[ServerProcess, float]) -> None:
    server, full_s = measured
    bodies = _bodies(full_s, ORDER_BACKLOG_S)
    assert server.process.poll() is None, "the SIGTERM test ran first (it stops the server)"
    clock = server_cpu_clock(server.process.pid)
    answers = asyncio.run(send_backlog(server.url, bodies, 0.01, timeout_s=300, clock=clock))
    result = summary(answers)
    assert result["statuses"] == {"200": REQUESTS}, result
    assert result["spearman"] >= 0.95, result
    p50 = result["p0_p25_p50_p75_p100"][2]
    assert p50 <= 0.6, result  # the k-th request finishes after about k/N of the backlog
    assert server.process.poll() is None


def test_sigterm_answers_the_whole_backlog_in_order_and_exits_0(
    measured: tuple[ServerProcess, float],
) -> None:
    server, full_s = measured
    bodies = _bodies(full_s, SIGTERM_BACKLOG_S)

    counted = received(server.url) + REQUESTS  # te_request_count once all have arrived

    async def run() -> tuple[list[Any], float, float]:
        clock = server_cpu_clock(server.process.pid)
        started = time.perf_counter()
        backlog = asyncio.ensure_future(
            send_backlog(server.url, bodies, 0.01, timeout_s=300, clock=clock)
        )
        waited = await sigterm_when_received(server.process, server.url, counted, 120)
        answers = await backlog
        return answers, waited, time.perf_counter() - started

    answers, waited, wall_s = asyncio.run(run())
    code = server.process.wait(60)
    result = summary(answers)
    assert code == 0, server.output()
    assert result["statuses"] == {"200": REQUESTS}, result  # every accepted request answered
    assert spearman([a.done_s for a in answers]) >= 0.95, result
    assert result["p0_p25_p50_p75_p100"][2] <= 0.6, result
    assert waited < 0.5 * wall_s, (waited, wall_s)  # SIGTERM with most of it still to run
