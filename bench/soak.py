"""Soak: many concurrent mixed requests on 127.0.0.1, every answer checked, RSS sampled.

    .venv/bin/python bench/soak.py [--model DIR] [--requests 100000] [--concurrency 256]
                                   [--texts 400] [--rss-every 5] [--json out.json]

First one reference per distinct text, each asked alone (the server's own answer for
/embed, /embed_all, /tokenize and /v1/embeddings); then ``--requests`` requests at
``--concurrency`` (a bounded count, loopback only) mixing /embed singles (40%) and batches
of 2-32 texts (25%), /embed_all singles (10%), /tokenize batches (10%) and /v1/embeddings
batches (15%), random texts in random order. Every answer is compared with the references
of the texts it was asked for: an answer that matches another text's reference is a
*crossed* answer (one client got another's result); one that matches none is a
*mismatch*. The server's RSS is read from /proc every ``--rss-every`` seconds.
Prints a summary (and writes it as JSON with ``--json``); exits 1 on any crossed answer,
mismatch or non-200 answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import Server, default_model, rss_mb  # noqa: E402
from bench.texts import text_sets  # noqa: E402

#: float32 answers of one text in different batches agree to this (padding, packing)
ATOL = 1e-4
#: bf16 answers depend on their batch (micro-batch shapes pick other kernels): they agree
#: with the text's own reference to this cosine, and other texts' references sit far below
MIN_COSINE_REDUCED = 0.999


@dataclass
class Match:
    """When an answer is the reference's: allclose in float32, a cosine in bf16."""

    reduced_precision: bool = False

    def same(self, vector: np.ndarray, reference: np.ndarray) -> bool:
        if reference.shape != vector.shape:
            return False
        if not self.reduced_precision:
            return bool(np.allclose(vector, reference, atol=ATOL))
        a, b = vector.ravel().astype(np.float64), reference.ravel().astype(np.float64)
        cosine = float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))
        return cosine >= MIN_COSINE_REDUCED


MATCH = Match()


@dataclass
class References:
    """The answers for each distinct text asked alone, by route."""

    embed: dict[str, np.ndarray] = field(default_factory=dict)  # (D,)
    embed_all: dict[str, np.ndarray] = field(default_factory=dict)  # (T, H)
    tokens: dict[str, list[int]] = field(default_factory=dict)
    openai: dict[str, np.ndarray] = field(default_factory=dict)  # (D,)


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    routes: Counter[str] = field(default_factory=Counter)
    checked: int = 0  # answers (one per text) compared with a reference
    crossed: int = 0
    mismatched: int = 0
    transport_errors: int = 0
    examples: list[str] = field(default_factory=list)

    def bad(self, kind: str, detail: str) -> None:
        if kind == "crossed":
            self.crossed += 1
        else:
            self.mismatched += 1
        if len(self.examples) < 10:
            self.examples.append(f"{kind}: {detail}")


async def build_references(client: httpx.AsyncClient, texts: list[str]) -> References:
    refs = References()
    for text in texts:
        embed = (await client.post("/embed", json={"inputs": text})).json()
        refs.embed[text] = np.asarray(embed[0], dtype=np.float32)
        embed_all = (await client.post("/embed_all", json={"inputs": text})).json()
        refs.embed_all[text] = np.asarray(embed_all[0], dtype=np.float32)
        tokens = (await client.post("/tokenize", json={"inputs": text})).json()
        refs.tokens[text] = [token["id"] for token in tokens[0]]
        openai = (await client.post("/v1/embeddings", json={"input": text})).json()
        refs.openai[text] = np.asarray(openai["data"][0]["embedding"], dtype=np.float32)
    return refs


def _closest(vector: np.ndarray, table: dict[str, np.ndarray]) -> str | None:
    for text, reference in table.items():
        if MATCH.same(vector, reference):
            return text
    return None


def check_vectors(
    tally: Tally, route: str, asked: list[str], got: list[Any], table: dict[str, np.ndarray]
) -> None:
    if len(got) != len(asked):
        tally.bad("mismatch", f"{route}: {len(got)} answers for {len(asked)} texts")
        return
    for text, answer in zip(asked, got, strict=True):
        tally.checked += 1
        vector = np.asarray(answer, dtype=np.float32)
        reference = table[text]
        if MATCH.same(vector, reference):
            continue
        other = _closest(vector, table)
        if other is not None:
            tally.bad("crossed", f"{route}: asked {text[:40]!r}, got {other[:40]!r}")
        else:
            tally.bad("mismatch", f"{route}: {text[:40]!r} matches no reference")


def check_tokens(tally: Tally, asked: list[str], got: list[Any], refs: References) -> None:
    if len(got) != len(asked):
        tally.bad("mismatch", f"/tokenize: {len(got)} answers for {len(asked)} texts")
        return
    by_ids = {tuple(ids): text for text, ids in refs.tokens.items()}
    for text, row in zip(asked, got, strict=True):
        tally.checked += 1
        ids = [token["id"] for token in row]
        if ids == refs.tokens[text]:
            continue
        other = by_ids.get(tuple(ids))
        if other is not None:
            tally.bad("crossed", f"/tokenize: asked {text[:40]!r}, got {other[:40]!r}")
        else:
            tally.bad("mismatch", f"/tokenize: {text[:40]!r} matches no reference")


async def one_request(
    client: httpx.AsyncClient, rng: random.Random, texts: list[str], refs: References, tally: Tally
) -> None:
    roll = rng.random()
    if roll < 0.40:
        route, asked = "/embed", [rng.choice(texts)]
        body: dict[str, Any] = {"inputs": asked[0]}
    elif roll < 0.65:
        route, asked = "/embed", rng.sample(texts, rng.randint(2, 32))
        body = {"inputs": asked}
    elif roll < 0.75:
        route, asked = "/embed_all", [rng.choice(texts)]
        body = {"inputs": asked[0]}
    elif roll < 0.85:
        route, asked = "/tokenize", rng.sample(texts, rng.randint(1, 8))
        body = {"inputs": asked}
    else:
        route, asked = "/v1/embeddings", rng.sample(texts, rng.randint(1, 16))
        body = {"input": asked}
    tally.routes[route] += 1
    try:
        response = await client.post(route, json=body)
    except httpx.HTTPError:
        tally.transport_errors += 1
        return
    tally.statuses[response.status_code] += 1
    if response.status_code != 200:
        return
    answer = response.json()
    if route == "/embed":
        check_vectors(tally, route, asked, answer, refs.embed)
    elif route == "/embed_all":
        check_vectors(tally, route, asked, answer, refs.embed_all)
    elif route == "/tokenize":
        check_tokens(tally, asked, answer, refs)
    else:
        vectors = [item["embedding"] for item in sorted(answer["data"], key=lambda d: d["index"])]
        check_vectors(tally, route, asked, vectors, refs.openai)


async def soak(
    url: str, pid: int, texts: list[str], requests: int, concurrency: int, rss_every: float
) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx.Timeout(120.0)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:
        started = time.perf_counter()
        dtype = (await client.get("/info")).json()["model_dtype"]
        MATCH.reduced_precision = dtype != "float32"
        print(f"engine dtype {dtype}: answers match by {MATCH}", file=sys.stderr)
        refs = await build_references(client, texts)
        references_s = time.perf_counter() - started
        print(f"references of {len(texts)} texts: {references_s:.0f} s", file=sys.stderr)
        tally = Tally()
        rss: list[tuple[float, int, float]] = [(0.0, 0, rss_mb(pid))]
        issued = 0
        done = 0

        async def worker(seed: int) -> None:
            nonlocal issued, done
            rng = random.Random(seed)
            while issued < requests:
                issued += 1
                await one_request(client, rng, texts, refs, tally)
                done += 1

        async def sample_rss() -> None:
            while True:
                await asyncio.sleep(rss_every)
                rss.append((time.perf_counter() - started, done, rss_mb(pid)))
                print(
                    f"{rss[-1][0]:.0f} s: {done} requests, RSS {rss[-1][2]:.0f} MB, "
                    f"crossed {tally.crossed}, mismatched {tally.mismatched}",
                    file=sys.stderr,
                    flush=True,
                )

        sampler = asyncio.ensure_future(sample_rss())
        soak_started = time.perf_counter()
        await asyncio.gather(*(worker(seed) for seed in range(concurrency)))
        elapsed = time.perf_counter() - soak_started
        sampler.cancel()
        rss.append((time.perf_counter() - started, done, rss_mb(pid)))
    return {
        "requests": done,
        "concurrency": concurrency,
        "distinct_texts": len(texts),
        "references_s": round(references_s, 1),
        "seconds": round(elapsed, 1),
        "requests_per_s": round(done / elapsed, 1),
        "statuses": dict(tally.statuses),
        "routes": dict(tally.routes),
        "answers_checked": tally.checked,
        "crossed": tally.crossed,
        "mismatched": tally.mismatched,
        "transport_errors": tally.transport_errors,
        "examples": tally.examples,
        "rss_mb": [(round(t, 1), n, round(mb, 1)) for t, n, mb in rss],
    }


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--texts", type=int, default=400, help="distinct texts (<= 928)")
    parser.add_argument("--rss-every", type=float, default=5.0, help="seconds")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    model = args.model or default_model()
    sets = text_sets(model / "tokenizer.json")
    pool = list(dict.fromkeys(sets["short"] + sets["t128"] + sets["mix"] + sets["t512"]))
    texts = pool[: args.texts]
    # SIGTERM (timeout, a CI limit) unwinds like Ctrl-C, so that the server is stopped too
    signal.signal(signal.SIGTERM, _interrupt)
    with tempfile.TemporaryDirectory(prefix="tei-ort-soak-") as tmp:
        # 429s would hide crossed answers behind refusals: room for every input in flight
        extra = ["--max-concurrent-requests", str(32 * args.concurrency)]
        server = Server(model, str(Path(tmp) / "engines"), extra)
        try:
            result = asyncio.run(
                soak(
                    server.url,
                    server.proc.pid,
                    texts,
                    args.requests,
                    args.concurrency,
                    args.rss_every,
                )
            )
        finally:
            server.stop()
    rss = [mb for _, _, mb in result["rss_mb"]]
    print(json.dumps({k: v for k, v in result.items() if k != "rss_mb"}, indent=1))
    print(f"RSS MB: start {rss[0]:.0f}, max {max(rss):.0f}, end {rss[-1]:.0f} ({len(rss)} samples)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    failed = (
        result["crossed"]
        or result["mismatched"]
        or result["transport_errors"]
        or set(result["statuses"]) - {200}
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
