"""Where the CPU goes when ``tei-ort serve`` answers single short texts at concurrency 32.

    .venv/bin/python bench/cpu_budget.py [--model DIR] [--connections 32] [--seconds 6]
        [--repeats 3]

Runs the server (its default engine) under ``wrk`` with single texts of the ``short`` set
and samples, per repeat, the CPU time of the server's threads from /proc (the main thread
runs the event loop: HTTP, JSON, tokenization of small inputs; the others run the engine,
the batcher and post-processing), the batches it formed (``te_batch_next_size``) and their
run time (``te_request_inference_duration``). Then, with the server stopped, the same
engine alone (``tei_ort.load``, same cache) on batches of that mean size drawn in arrival
order from the same texts, padded to their longest as the server pads them. The two tell
apart what the HTTP path costs and what the engine costs on the batches the server gets.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import Server, cpu_seconds, default_model, wrk  # noqa: E402
from bench.texts import text_sets  # noqa: E402


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of ``pid``."""
    out: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[int(task.name)] = cpu_seconds(task / "stat")
        except FileNotFoundError:  # the thread ended meanwhile
            continue
    return out


def metric_sums(url: str) -> dict[str, float]:
    """The _sum and _count samples of the histograms this script reads."""
    wanted = ("te_batch_next_size", "te_request_inference_duration")
    out: dict[str, float] = {}
    for line in urllib.request.urlopen(url + "/metrics").read().decode().splitlines():
        name, _, value = line.partition(" ")
        if name.startswith(wanted) and name.endswith(("_sum", "_count")):
            out[name] = float(value)
    return out


def served(
    model: Path, cache: str, texts: list[str], args: argparse.Namespace
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="tei-ort-budget-") as tmp:
        bodies = Path(tmp) / "short-1.jsonl"
        bodies.write_text("".join(json.dumps({"inputs": t}) + "\n" for t in texts))
        server = Server(model, cache, [])
        try:
            pid = server.proc.pid
            wrk(server.url, bodies, args.connections, 2)  # warm-up
            for _ in range(args.repeats):
                cpu0, before = thread_cpu(pid), metric_sums(server.url)
                wall0 = time.perf_counter()
                result = wrk(server.url, bodies, args.connections, args.seconds)
                wall = time.perf_counter() - wall0
                cpu1, after = thread_cpu(pid), metric_sums(server.url)
                d = {name: after[name] - before.get(name, 0.0) for name in after}
                used = {tid: cpu1[tid] - cpu0.get(tid, 0.0) for tid in cpu1}
                loop = used.get(pid, 0.0)  # the main thread: uvicorn's event loop
                others = sum(v for tid, v in used.items() if tid != pid)
                requests = result["requests"]
                batches = max(d["te_batch_next_size_count"], 1)
                timed = max(d["te_request_inference_duration_count"], 1)
                rows.append({
                    "req_s": requests / (result["duration_us"] / 1e6),
                    "p50_ms": result["p50_us"] / 1e3,
                    "loop_cores": loop / wall,
                    "other_cores": others / wall,
                    "loop_ms_per_req": loop / requests * 1e3,
                    "other_ms_per_req": others / requests * 1e3,
                    "batch_size": d["te_batch_next_size_sum"] / batches,
                    "batch_ms": d["te_request_inference_duration_sum"] / timed * 1e3,
                })  # fmt: skip
        finally:
            server.stop()
    return rows


def alone(model: Path, cache: str, texts: list[str], size: int, calls: int) -> dict[str, float]:
    """The engine alone on ``calls`` batches of ``size`` texts in arrival order."""
    import tei_ort

    model_api = tei_ort.load(str(model), engine_cache=cache)
    executor = model_api.executor  # pads a batch as the server does
    encoded = model_api.loaded.tokenizer.encode_batch(texts)
    rng = np.random.default_rng(0)
    batches = [
        executor.inputs([encoded[i] for i in rng.integers(0, len(encoded), size)])
        for _ in range(calls)
    ]
    for inputs in batches[:10]:
        executor.run(inputs)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for inputs in batches:
        executor.run(inputs)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {
        "texts_s": size * calls / wall,
        "batch_ms": wall / calls * 1e3,
        "cpu_ms_per_text": cpu / (size * calls) * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = args.model or default_model()
    texts = text_sets(model / "tokenizer.json")["short"]
    with tempfile.TemporaryDirectory(prefix="tei-ort-budget-cache-") as cache:
        rows = served(model, cache, texts, args)
        size = max(1, round(statistics.median(r["batch_size"] for r in rows)))
        engine = alone(model, cache, texts, size, calls=max(40, 3000 // size))
    print(f"# tei-ort serve, wrk -c{args.connections} single short texts, {args.seconds} s x "
          f"{args.repeats}; load avg {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(
        "| req/s | p50 ms | event loop cores | other server cores | loop CPU ms/req "
        "| other CPU ms/req | texts/batch | batch run ms |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        cells = [f"{r['req_s']:.0f}", f"{r['p50_ms']:.1f}", f"{r['loop_cores']:.2f}"]
        cells += [f"{r['other_cores']:.2f}", f"{r['loop_ms_per_req']:.2f}"]
        cells += [f"{r['other_ms_per_req']:.2f}", f"{r['batch_size']:.1f}", f"{r['batch_ms']:.1f}"]
        print("| " + " | ".join(cells) + " |")
    print(f"\n# the engine alone, batches of {size} short texts in arrival order: "
          f"{engine['texts_s']:.0f} texts/s, {engine['batch_ms']:.1f} ms per batch, "
          f"{engine['cpu_ms_per_text']:.2f} CPU ms per text")  # fmt: skip


if __name__ == "__main__":
    main()
