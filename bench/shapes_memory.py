"""First-call cost of a new shape, and RSS over many random shapes, for one CPU engine.

    .venv/bin/python bench/shapes_memory.py [--dtype bfloat16] [--steps 5] [--calls 60]
        [--capacity N]

Runs the engine of ``tei_ort.load`` (all-MiniLM-L6-v2) at one thread: the CPU time of the
first call at 10 new lengths against a repeat (batches of 1 and 32), then ``--steps`` x
``--calls`` batches of random shape (1-32 rows x 1-256 tokens), printing RSS after each
step. ``--capacity`` overrides the OpenVINO engine's CPU_RUNTIME_CACHE_CAPACITY.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tei_ort.engines.base import Engine, EngineInputs


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_ms(engine: Engine, rows: int, length: int) -> float:
    ids = np.full((rows, length), 2000, np.int64)  # (B, T)
    start = time.process_time()
    engine.run(EngineInputs(ids, np.ones_like(ids), np.zeros_like(ids)))
    return (time.process_time() - start) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--capacity", type=int)
    args = parser.parse_args()
    if args.capacity is not None:
        import tei_ort.engines.openvino_engine as ov_engine

        ov_engine.RUNTIME_CACHE_CAPACITY = args.capacity
    import tei_ort

    with tempfile.TemporaryDirectory(prefix="tei-ort-shapes-") as cache:
        engine = tei_ort.load(None, engine_cache=cache, dtype=args.dtype, threads=1).loaded.engine
        for rows, lengths in ((1, range(5, 45, 4)), (32, range(10, 130, 12))):
            first = [cpu_ms(engine, rows, t) for t in lengths]
            again = [min(cpu_ms(engine, rows, t) for _ in range(3)) for t in lengths]
            print(
                f"batch {rows}: first call at a new length {statistics.median(first):.1f} ms "
                f"CPU, repeated {statistics.median(again):.1f} ms (median of {len(first)})"
            )
        rng = np.random.default_rng(0)
        print(f"RSS {rss_mb():.0f} MB before the random shapes")
        for step in range(args.steps):
            for _ in range(args.calls):
                cpu_ms(engine, int(rng.integers(1, 33)), int(rng.integers(1, 257)))
            print(
                f"after {(step + 1) * args.calls} calls: RSS {rss_mb():.0f} MB, "
                f"{time.process_time():.0f} CPU-s",
                flush=True,
            )


if __name__ == "__main__":
    main()
