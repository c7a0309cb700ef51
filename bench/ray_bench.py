"""tei-ort on Ray against tei-ort without it, on this machine.

    .venv/bin/python bench/ray_bench.py [--model DIR] [--rows 6000] [--repeats 3]
        [--http-seconds 10] [--skip corpus serve] [--json out.json]

- ``corpus``: the same ``--rows`` texts (1 to 3 sentences of bench/corpus.txt each) through
  the in-process API (``tei_ort.load(threads=2).embed(texts)``, one call) and through
  ``tei-ort embed-corpus --num-workers 1 --cpus-per-worker 2`` on a local Ray of 2 CPUs
  started once by this script. embed-corpus's rows/s are over its embed pass (actor start
  and model load included; Ray's start and the plan pass are not, and are given apart).
- ``serve``: single-text /embed requests at 32 connections (``wrk``, bench/embed.lua) to
  ``tei-ort serve`` and to ``tei-ort serve-ray`` (one replica of 2 CPUs, through Serve's
  proxy), after a 2 s warm-up each.

Medians over ``--repeats``. Nothing is installed by this script (wrk: apt-get install wrk).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import PY, Server, default_model, free_port, machine, wrk  # noqa: E402
from bench.texts import CORPUS  # noqa: E402

CLI = str(Path(PY).parent / "tei-ort")


def corpus_texts(rows: int, seed: int = 0) -> list[str]:
    sentences = [s for s in CORPUS.read_text(encoding="utf-8").splitlines() if s.strip()]
    rng = random.Random(seed)
    return [" ".join(rng.choices(sentences, k=rng.randint(1, 3))) for _ in range(rows)]


def bench_api(model: Path, cache: str, texts: list[str], repeats: int) -> dict[str, Any]:
    import tei_ort

    loaded = tei_ort.load(str(model), engine_cache=cache, threads=2)
    loaded.embed(texts[:64])  # warm-up
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        loaded.embed(texts)
        rates.append(len(texts) / (time.perf_counter() - start))
    loaded.close()
    return {"method": "api", "rows_s": statistics.median(rates), "all": rates}


def bench_corpus(
    model: Path, cache: str, texts: list[str], repeats: int, tmp: Path
) -> dict[str, Any]:
    import ray

    data = tmp / "corpus.jsonl"
    with data.open("w") as f:
        for i, text in enumerate(texts):
            f.write(json.dumps({"id": f"r{i}", "text": text}) + "\n")
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray_start_s = time.perf_counter() - start
    address = str(ray.get_runtime_context().gcs_address)
    summaries = []
    try:
        for k in range(repeats):
            out = subprocess.run(
                [CLI, "embed-corpus", "--model-id", str(model), "--engine-cache", cache,
                 "--input", str(data), "--output", str(tmp / f"out{k}"),
                 "--ray-address", address, "--num-workers", "1", "--cpus-per-worker", "2"],
                capture_output=True, text=True, check=True,
                env={**os.environ, "HF_HUB_OFFLINE": "1"},
            )  # fmt: skip
            summaries.append(json.loads(out.stdout))
    finally:
        ray.shutdown()
    rates = [s["rows_per_second"] for s in summaries]
    return {
        "method": "embed-corpus",
        "rows_s": statistics.median(rates),
        "all": rates,
        "end_to_end_s": statistics.median(s["seconds"] for s in summaries),
        "embed_s": statistics.median(s["embed_seconds"] for s in summaries),
        "ray_start_s": ray_start_s,
    }


class RayServer:
    """``tei-ort serve-ray`` in a subprocess, healthy through Serve's proxy."""

    def __init__(self, model: Path, cache: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        start = time.perf_counter()
        self.proc = subprocess.Popen(
            [CLI, "serve-ray", "--model-id", str(model), "--engine-cache", cache,
             "--port", str(self.port), "--hostname", "127.0.0.1", "--num-cpus", "2"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("tei-ort serve-ray exited")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        else:
            self.stop()
            raise RuntimeError("tei-ort serve-ray did not become healthy in 180 s")
        self.healthy_s = time.perf_counter() - start

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def bench_serve(
    model: Path, cache: str, texts: list[str], seconds: int, repeats: int, tmp: Path
) -> list[dict[str, Any]]:
    if shutil.which("wrk") is None:
        return [{"method": "serve", "skipped": "wrk is not installed (apt-get install wrk)"}]
    bodies = tmp / "single.jsonl"
    with bodies.open("w") as f:
        for text in texts[:512]:
            f.write(json.dumps({"inputs": text}) + "\n")
    rows = []
    for name, make in (
        ("tei-ort serve", lambda: Server(model, cache, [])),
        ("tei-ort serve-ray", lambda: RayServer(model, cache)),
    ):
        server = make()
        try:
            wrk(server.url, bodies, 32, 2)  # warm-up
            runs = [wrk(server.url, bodies, 32, seconds) for _ in range(repeats)]
        finally:
            server.stop()
        rates = [r["requests"] / (r["duration_us"] / 1e6) for r in runs]
        best = runs[rates.index(statistics.median(rates))] if repeats % 2 else runs[0]
        rows.append(
            {
                "method": name,
                "healthy_s": server.healthy_s,
                "requests_s": statistics.median(rates),
                "all": rates,
                "p50_ms": best["p50_us"] / 1e3,
                "p99_ms": best["p99_us"] / 1e3,
                "errors": sum(r["errors"] + r["non2xx"] for r in runs),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--rows", type=int, default=6000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--http-seconds", type=int, default=10)
    parser.add_argument("--skip", nargs="*", default=[], choices=["corpus", "serve"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    model = args.model or default_model()
    texts = corpus_texts(args.rows)
    results: dict[str, Any] = {"machine": machine(), "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="tei-ort-ray-bench-") as tmp_name:
        tmp = Path(tmp_name)
        cache = str(tmp / "engines")
        if "corpus" not in args.skip:
            api = bench_api(model, cache, texts, args.repeats)
            corpus = bench_corpus(model, cache, texts, args.repeats, tmp)
            corpus["x_api"] = corpus["rows_s"] / api["rows_s"]
            results["corpus"] = [api, corpus]
            print(json.dumps(results["corpus"], indent=1), flush=True)
        if "serve" not in args.skip:
            results["serve"] = bench_serve(
                model, cache, texts, args.http_seconds, args.repeats, tmp
            )
            print(json.dumps(results["serve"], indent=1), flush=True)
    results["load_after"] = os.getloadavg()
    print(json.dumps({"load_before": results["load_before"], "load_after": results["load_after"]}))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
