"""Typed embeddings (issue 27): bytes per vector, and the time int8 / binary add to a request.

    .venv/bin/python bench/typed_embeddings.py [--model DIR] [--batch 32] [--calls 60]
        [--repeats 5] [--json out.json]

- ``step``: the quantization step alone (``embedding_types.encode`` of a (batch, D)
  float32 array: int8 over calibrated ranges, ubinary), median of 2,000 calls, in this
  process (no server);
- ``http``: one ``tei-ort serve`` (the model, float32 engine); ``--batch``-text /embed
  requests one at a time over one keep-alive connection, for each of float, int8, ubinary
  (JSON numbers) and int8, ubinary as base64, rounds interleaved so that drift hits every
  variant alike; per variant the median latency of ``--calls`` requests per round, then the
  median over ``--repeats`` rounds, and the answer's bytes. The added time is the variant's
  median minus float's, as a share of float's.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.cpu_info import cpu_name  # noqa: E402
from bench.run import Server, default_model  # noqa: E402
from bench.texts import text_sets  # noqa: E402
from tei_ort.serving.embedding_types import EmbeddingType, encode, ranges_of  # noqa: E402

VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("float", {}),
    ("int8", {"embedding_type": "int8"}),
    ("ubinary", {"embedding_type": "ubinary"}),
    ("int8 base64", {"embedding_type": "int8", "encoding_format": "base64"}),
    ("ubinary base64", {"embedding_type": "ubinary", "encoding_format": "base64"}),
]


def step_times(batch: int, dimensions: int) -> dict[str, float]:
    """Median microseconds of one encode call on (batch, dimensions) float32."""
    rng = np.random.default_rng(0)
    calibration = rng.standard_normal((96, dimensions)).astype(np.float32)
    ranges = ranges_of(calibration)
    vectors = rng.standard_normal((batch, dimensions)).astype(np.float32)  # (B, D)
    out = {}
    for kind in (EmbeddingType.INT8, EmbeddingType.UBINARY):
        times = []
        for _ in range(2000):
            start = time.perf_counter()
            encode(vectors, kind, ranges)
            times.append(time.perf_counter() - start)
        out[kind.value] = statistics.median(times) * 1e6
    return out


def post(conn: http.client.HTTPConnection, body: bytes) -> tuple[float, int]:
    start = time.perf_counter()
    conn.request("POST", "/embed", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    elapsed = time.perf_counter() - start
    if response.status != 200:
        raise RuntimeError(f"/embed answered {response.status}: {data[:200]!r}")
    return elapsed * 1e3, len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    model = args.model or default_model()
    texts = text_sets(model / "tokenizer.json")["short"][: args.batch]

    with tempfile.TemporaryDirectory(prefix="tei-ort-typed-bench-") as cache:
        server = Server(model, cache, ["--dtype", "float32"])
        try:
            port = int(server.url.rsplit(":", 1)[1])
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            bodies = {
                name: json.dumps({"inputs": texts, **extra}).encode() for name, extra in VARIANTS
            }
            for body in bodies.values():  # warm every path
                for _ in range(5):
                    post(conn, body)
            rounds: dict[str, list[float]] = {name: [] for name, _ in VARIANTS}
            sizes: dict[str, int] = {}
            for _ in range(args.repeats):
                for name, _ in VARIANTS:
                    latencies = []
                    for _ in range(args.calls):
                        ms, size = post(conn, bodies[name])
                        latencies.append(ms)
                    rounds[name].append(statistics.median(latencies))
                    sizes[name] = size
            conn.close()
        finally:
            server.stop()
    dimensions = 384
    float_ms = statistics.median(rounds["float"])
    result: dict[str, Any] = {
        "cpu": cpu_name(),
        "batch": args.batch,
        "step_us": step_times(args.batch, dimensions),
        "bytes_per_vector": {
            kind.value: kind.bytes_per_vector(dimensions) for kind in EmbeddingType
        },
        "http": {
            name: {
                "median_ms": statistics.median(values),
                "rounds_ms": values,
                "added_pct": 100 * (statistics.median(values) - float_ms) / float_ms,
                "answer_bytes_per_vector": sizes[name] / args.batch,
            }
            for name, values in rounds.items()
        },
    }
    step = result["step_us"]
    result["step_pct_of_float_request"] = {
        kind: 100 * (us / 1e3) / float_ms for kind, us in step.items()
    }
    print(json.dumps(result, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
