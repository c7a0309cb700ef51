"""Backlog: many large requests at once to one ``tei-ort serve``; when does each finish?

    .venv/bin/python bench/backlog.py [--model DIR] [--requests 60] [--backlog-s 60]
                                      [--texts 32] [--words 180] [--stagger-ms 10]
                                      [--max-concurrent-requests 512]
                                      [--max-batch-requests N] [--sigterm]
                                      [--json out.json]

First one request of ``--texts`` texts of ``--words`` words is timed alone (median of 3);
the words per text are then scaled down (never up) so that ``--requests`` requests make
about ``--backlog-s`` seconds of work on this machine. The requests are sent
``--stagger-ms`` apart (their arrival order), all on their own connections, and the time
each answer comes back is kept. Reported: the completion times as fractions of the
backlog (p0/p25/p50/p75/p100), the rank correlation (Spearman) of completion order with
arrival order, and the statuses. With ``--sigterm`` the server is sent SIGTERM as soon as
it has counted every request (``te_request_count``), and its exit code is reported too.

In arrival order, the k-th request finishes after about k/N of the backlog (p50 ~0.5,
Spearman ~1). TEI 1.9.3 refuses any request whose inputs do not all find a permit at once
(429, see bench/README.md): it has no backlog to order.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.cpu_info import cpu_name  # noqa: E402

WORDS = tuple(
    [
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
        "pi",
        "rho",
        "sigma",
        "tau",
        "upsilon",
        "phi",
        "chi",
        "psi",
        "omega",
        "river",
        "mountain",
        "cloud",
        "forest",
        "ocean",
        "desert",
        "city",
        "road",
    ]
)


@dataclass(frozen=True)
class Answer:
    """One request of the backlog: its arrival index, status, and seconds from the first
    send to its answer."""

    index: int
    status: int
    done_s: float


def texts(request: int, count: int, words: int) -> list[str]:
    """``count`` distinct texts of ``words`` words (no answer can come from a cache)."""
    out = []
    for i in range(count):
        body = " ".join(WORDS[(request * 7 + i * 3 + j) % len(WORDS)] for j in range(words))
        out.append(f"request {request} text {i} {body}")
    return out


def time_one(url: str, count: int, words: int, repeats: int = 3) -> float:
    """Median seconds of one request of ``count`` texts, sent alone."""
    times = []
    with httpx.Client(timeout=300) as client:
        for repeat in range(repeats):
            body = {"inputs": texts(10_000 + repeat, count, words)}
            started = time.perf_counter()
            response = client.post(f"{url}/embed", json=body)
            times.append(time.perf_counter() - started)
            response.raise_for_status()
    return statistics.median(times)


def words_for(seconds_per_request: float, seconds_per_full: float, full: int) -> int:
    """How many words a text (at most ``full``, at least 4) for a request of about
    ``seconds_per_request``, one with texts of ``full`` words taking ``seconds_per_full``
    (the work of a short-text model is about linear in tokens)."""
    return max(4, min(full, round(full * seconds_per_request / seconds_per_full)))


async def send_backlog(
    url: str,
    bodies: list[dict[str, Any]],
    stagger_s: float,
    timeout_s: float,
    clock: Callable[[], float] = time.perf_counter,
) -> list[Answer]:
    """POST every body to /embed, ``stagger_s`` apart, each on its own connection; the
    answers in arrival order (status 0: no answer, e.g. the connection failed), timed by
    ``clock`` (``server_cpu_clock``: the server's work done, whatever else loads the
    machine)."""
    limits = httpx.Limits(max_connections=len(bodies) + 4, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:
        started = clock()

        async def one(index: int, body: dict[str, Any]) -> Answer:
            try:
                response = await client.post(f"{url}/embed", json=body)
                status = response.status_code
            except httpx.HTTPError:
                status = 0
            return Answer(index, status, clock() - started)

        tasks = []
        for index, body in enumerate(bodies):
            tasks.append(asyncio.ensure_future(one(index, body)))
            await asyncio.sleep(stagger_s)
        return list(await asyncio.gather(*tasks))


def server_cpu_clock(pid: int) -> Callable[[], float]:
    """CPU seconds the process ``pid`` has used (all its threads): a clock of the server's
    own work, which other load on a shared machine does not stretch."""
    tick = os.sysconf("SC_CLK_TCK")
    stat = Path(f"/proc/{pid}/stat")
    last = [0.0]

    def clock() -> float:
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):  # exited meanwhile: its last reading
            return last[0]
        last[0] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
        return last[0]

    return clock


def spearman(values: list[float]) -> float:
    """Rank correlation of ``values`` (in arrival order) with their position."""
    ranks = np.argsort(np.argsort(np.asarray(values, dtype=np.float64)))
    positions = np.arange(len(values))
    if len(values) < 2:
        return 1.0
    return float(np.corrcoef(ranks, positions)[0, 1])


def summary(answers: list[Answer]) -> dict[str, Any]:
    """Completion percentiles as fractions of the backlog, order, statuses."""
    done = [a.done_s for a in answers]
    total = max(done)
    fractions = np.quantile(np.asarray(done) / total, [0.0, 0.25, 0.5, 0.75, 1.0])
    statuses: dict[str, int] = {}
    for answer in answers:
        statuses[str(answer.status)] = statuses.get(str(answer.status), 0) + 1
    return {
        "requests": len(answers),
        "backlog_s": round(total, 2),
        "p0_p25_p50_p75_p100": [round(float(f), 3) for f in fractions],
        "p50_s": round(float(np.quantile(done, 0.5)), 2),
        "spearman": round(spearman(done), 4),
        "statuses": statuses,
    }


def received(url: str) -> int:
    """Requests the server has counted (te_request_count, all methods)."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    found = re.findall(r'^te_request_count\{method="\w+"\} (\d+)', text, re.MULTILINE)
    return sum(int(value) for value in found)


async def sigterm_when_received(server: Any, url: str, count: int, timeout_s: float) -> float:
    """Send SIGTERM once the server's te_request_count reaches ``count``; seconds waited."""
    started = time.perf_counter()
    while await asyncio.to_thread(received, url) < count:
        if time.perf_counter() - started > timeout_s:
            raise RuntimeError(f"the server did not count {count} requests in {timeout_s} s")
        await asyncio.sleep(0.05)
    server.send_signal(signal.SIGTERM)
    return time.perf_counter() - started


def main() -> int:
    from bench.run import Server, default_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--backlog-s", type=float, default=60.0)
    parser.add_argument("--texts", type=int, default=32)
    parser.add_argument("--words", type=int, default=180)
    parser.add_argument("--stagger-ms", type=float, default=10.0)
    parser.add_argument("--max-concurrent-requests", type=int, default=512)
    parser.add_argument("--max-batch-requests", type=int, default=None)
    parser.add_argument("--sigterm", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    model = args.model or default_model()
    extra = ["--max-concurrent-requests", str(args.max_concurrent_requests), "--dtype", "float32"]
    if args.max_batch_requests is not None:
        extra += ["--max-batch-requests", str(args.max_batch_requests)]
    with tempfile.TemporaryDirectory(prefix="tei-ort-backlog-") as cache:
        server = Server(model, cache, extra)
        try:
            full_s = time_one(server.url, args.texts, args.words)
            per_request = args.backlog_s / args.requests
            words = words_for(per_request, full_s, args.words)
            bodies = [{"inputs": texts(i, args.texts, words)} for i in range(args.requests)]
            expected_s = args.requests * full_s * words / args.words

            counted = received(server.url) + len(bodies)

            async def run() -> tuple[list[Answer], float | None]:
                backlog = asyncio.ensure_future(
                    send_backlog(server.url, bodies, args.stagger_ms / 1000, 3600)
                )
                waited = None
                if args.sigterm:
                    waited = await sigterm_when_received(server.proc, server.url, counted, 600)
                return await backlog, waited

            answers, waited = asyncio.run(run())
            code = server.proc.wait(600) if args.sigterm else None
        finally:
            server.stop()
    result = {
        "cpu": cpu_name(),
        "one_request_s": round(full_s, 3),
        "texts_per_request": args.texts,
        "words_per_text": words,
        "expected_backlog_s": round(expected_s, 1),
        **summary(answers),
        "sigterm_after_s": None if waited is None else round(waited, 2),
        "exit_code": code,
        "answers": [asdict(a) for a in answers],
    }
    shown = {k: v for k, v in result.items() if k != "answers"}
    print(json.dumps(shown, indent=1))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
