"""Server memory over many requests: ``tei-ort serve`` driven by ``wrk``, RSS from /proc.

    .venv/bin/python bench/memory.py [--model DIR] [--requests 100000] [--step-seconds 10]

Bodies cycle through single short texts and, every 50th, a 32-text request of the ``mix``
set (texts up to the model's limit), so that big batches and every sequence length
occur. wrk runs in steps at concurrency 32; after each step the server's RSS is read from
/proc. Prints one line per step (requests so far, RSS MB) and the verdict against the
bound of issue 5: flat (the last half grows less than 5%) and below 2 x weights + 300 MB.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import Server, default_model, rss_mb, wrk  # noqa: E402
from bench.texts import text_sets  # noqa: E402


def bodies_file(model: Path, path: Path) -> None:
    sets = text_sets(model / "tokenizer.json")
    short, mix = sets["short"], sets["mix"]
    with path.open("w") as f:
        for i, text in enumerate(short):
            if i % 50 == 49:
                start = (i * 32) % len(mix)
                f.write(json.dumps({"inputs": (mix + mix)[start : start + 32]}) + "\n")
            else:
                f.write(json.dumps({"inputs": text}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--step-seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--json", type=Path, help="also write the curve here")
    args = parser.parse_args()
    model = args.model or default_model()
    weights_mb = sum(p.stat().st_size for p in model.glob("*.safetensors")) / 2**20
    with tempfile.TemporaryDirectory(prefix="tei-ort-memory-") as tmp_name:
        tmp = Path(tmp_name)
        bodies = tmp / "bodies.jsonl"
        bodies_file(model, bodies)
        server = Server(model, str(tmp / "engines"), [])
        curve: list[tuple[int, float]] = [(0, rss_mb(server.proc.pid))]
        errors = 0
        try:
            print(f"requests 0: RSS {curve[0][1]:.0f} MB", flush=True)
            done = 0
            while done < args.requests:
                r = wrk(server.url, bodies, args.connections, args.step_seconds)
                done += int(r["requests"])
                errors += int(r["errors"]) + int(r["non2xx"])
                curve.append((done, rss_mb(server.proc.pid)))
                print(f"requests {done}: RSS {curve[-1][1]:.0f} MB", flush=True)
        finally:
            server.stop()
    rss = [m for _, m in curve]
    half = rss[len(rss) // 2]
    bound = 2 * weights_mb + 300
    growth = (rss[-1] - half) / half
    print(
        f"weights {weights_mb:.0f} MB, bound {bound:.0f} MB; RSS start {rss[0]:.0f}, max "
        f"{max(rss):.0f}, end {rss[-1]:.0f} MB; last-half growth {100 * growth:.1f}%; "
        f"errors {errors}; {'flat' if growth < 0.05 else 'GROWING'}, "
        f"{'under' if max(rss) <= bound else 'OVER'} the bound"
    )
    if args.json:
        args.json.write_text(json.dumps({"weights_mb": weights_mb, "curve": curve}))


if __name__ == "__main__":
    main()
