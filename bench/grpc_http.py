"""gRPC unary vs HTTP requests/s for single short texts, one server, same run.

    .venv/bin/python bench/grpc_http.py [--seconds 10] [--concurrency 32] [--repeats 3]

Starts ``tei-ort serve --grpc-port`` (all-MiniLM-L6-v2, HTTP and gRPC from one Infer) on
127.0.0.1 and alternates, ``--repeats`` times: gRPC ``tei.v1.Embed/Embed`` from a Python
``grpc.aio`` client, HTTP ``POST /embed`` from a Python ``httpx`` client (the same client
cost as gRPC's), and HTTP from ``wrk`` (C, one thread) when installed. Each step keeps
``--concurrency`` calls in flight for ``--seconds`` and counts answers, and reads the
server's CPU time per answer from /proc (what each protocol costs the server, which moves
far less than requests/s when other work shares the cores). Texts: ``bench/texts.py``
``short`` (~16 tokens). Prints one JSON line per step and medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import cpu_seconds  # noqa: E402
from bench.texts import text_sets  # noqa: E402
from tei_ort.proto import tei_pb2 as pb  # noqa: E402
from tei_ort.proto import tei_pb2_grpc as rpc  # noqa: E402
from tests.support.app import MINILM_DIR  # noqa: E402
from tests.support.process import ServerProcess, free_port  # noqa: E402


async def _drive(call: object, texts: list[str], seconds: float, concurrency: int) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(offset: int) -> None:
        nonlocal done
        i = offset
        while time.perf_counter() < deadline:
            await call(texts[i % len(texts)])  # type: ignore[operator]
            done += 1
            i += concurrency

    started = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return done / (time.perf_counter() - started)


async def grpc_rate(port: int, texts: list[str], seconds: float, concurrency: int) -> float:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = rpc.EmbedStub(channel)

        async def call(text: str) -> None:
            await stub.Embed(pb.EmbedRequest(inputs=text))

        await _drive(call, texts, 1.0, concurrency)  # warm-up
        return await _drive(call, texts, seconds, concurrency)


async def httpx_rate(url: str, texts: list[str], seconds: float, concurrency: int) -> float:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def call(text: str) -> None:
            response = await client.post("/embed", json={"inputs": text})
            response.raise_for_status()

        await _drive(call, texts, 1.0, concurrency)
        return await _drive(call, texts, seconds, concurrency)


def wrk_rate(url: str, bodies: Path, seconds: float, concurrency: int) -> float | None:
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    script = str(ROOT / "bench" / "embed.lua")
    command = [wrk, "-t1", f"-c{concurrency}", f"-d{int(seconds)}s", "-s", script, url]
    output = subprocess.run(
        [*command, "--", str(bodies)], capture_output=True, text=True, check=True
    ).stdout
    result = json.loads(output.strip().splitlines()[-1])
    if result["errors"] or result["non2xx"]:
        raise RuntimeError(f"wrk saw errors: {result}")
    return float(result["requests"]) / (result["duration_us"] / 1e6)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    texts = text_sets(MINILM_DIR / "tokenizer.json")["short"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bodies = root / "bodies.jsonl"
        bodies.write_text("".join(json.dumps({"inputs": t}) + "\n" for t in texts))
        grpc_port = free_port()
        server = ServerProcess(
            ["--grpc-port", str(grpc_port), "--engine-cache", str(root / "engines")],
            log=root / "server.log",
        )
        rates: dict[str, list[float]] = {"grpc": [], "http-httpx": [], "http-wrk": []}
        costs: dict[str, list[float]] = {name: [] for name in rates}
        stat = Path(f"/proc/{server.process.pid}/stat")  # the server process's CPU time
        try:
            for repeat in range(args.repeats):
                steps = {
                    "grpc": lambda: asyncio.run(
                        grpc_rate(grpc_port, texts, args.seconds, args.concurrency)
                    ),
                    "http-httpx": lambda: asyncio.run(
                        httpx_rate(server.url, texts, args.seconds, args.concurrency)
                    ),
                    "http-wrk": lambda: wrk_rate(
                        server.url, bodies, args.seconds, args.concurrency
                    ),
                }
                for name, step in steps.items():
                    cpu = cpu_seconds(stat)
                    rate = step()
                    if rate is None:
                        continue
                    # includes the 1 s warm-up of the Python clients: an estimate per answer
                    answers = rate * (args.seconds + (0.0 if name == "http-wrk" else 1.0))
                    cost_ms = 1000 * (cpu_seconds(stat) - cpu) / answers
                    rates[name].append(rate)
                    costs[name].append(cost_ms)
                    line = {"repeat": repeat, "step": name, "requests_per_s": round(rate, 1)}
                    line["server_cpu_ms_per_request"] = round(cost_ms, 2)
                    print(json.dumps(line))
        finally:
            server.stop()
    medians = {name: round(statistics.median(v), 1) for name, v in rates.items() if v}
    cpu_ms = {name: round(statistics.median(v), 2) for name, v in costs.items() if v}
    summary = {"concurrency": args.concurrency, "median_requests_per_s": medians}
    summary["median_server_cpu_ms_per_request"] = cpu_ms
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
