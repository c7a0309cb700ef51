"""The CPU engines side by side on this CPU: which one the default rule should pick.

    .venv/bin/python bench/cpu_engines.py [--dtypes float32 bfloat16] [--repeats 3]

Each dtype (``tei_ort.load(..., dtype=...)``: ONNX Runtime float32, OpenVINO bf16, ONNX
Runtime int8) runs in its own process, on all-MiniLM-L6-v2 with 2 threads, over the short,
~128- and ~512-token sets of bench/texts.py; each process reports its median texts/s of 5
calls, the driver the median over ``--repeats`` processes. The engine cache is shared, so
builds are not timed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cpu_info import cpu_name
from tei_ort.engines.cpu_choice import read_cpu_flags

#: texts per call for each set: about the same work per call
SETS = {"short": 256, "t128": 64, "t512": 32}


def child(dtype: str, cache: str) -> dict[str, float]:
    import tei_ort
    from bench.texts import text_sets
    from tei_ort.model.hub import default_model_path

    sets = text_sets(default_model_path() / "tokenizer.json")
    model = tei_ort.load(str(default_model_path()), engine_cache=cache, dtype=dtype, threads=2)
    rates = {}
    for name, count in SETS.items():
        texts = sets[name][:count]
        model.embed(texts[:8])  # warm: shapes, kernels
        seconds = []
        for _ in range(5):
            start = time.perf_counter()
            model.embed(texts)
            seconds.append(time.perf_counter() - start)
        rates[name] = len(texts) / statistics.median(seconds)
    model.close()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("DTYPE", "CACHE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    cpu = cpu_name()
    flags = read_cpu_flags()
    bf16 = sorted(f for f in flags if "bf16" in f or f.startswith("amx"))
    print(f"# {cpu}; bf16/AMX flags: {' '.join(bf16) or 'none'}; texts/s, medians")
    with tempfile.TemporaryDirectory(prefix="cpu-engines-") as cache:
        runs: dict[str, list[dict[str, float]]] = {d: [] for d in args.dtypes}
        for _ in range(args.repeats):
            for dtype in args.dtypes:
                done = subprocess.run(
                    [sys.executable, __file__, "--child", dtype, cache],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                runs[dtype].append(json.loads(done.stdout.strip().splitlines()[-1]))
    base = args.dtypes[0]
    print("| dtype | " + " | ".join(SETS) + " |")
    print("|---|" + "---:|" * len(SETS))
    medians = {d: {s: statistics.median(r[s] for r in runs[d]) for s in SETS} for d in runs}
    for dtype, rates in medians.items():
        cells = [
            f"{rates[s]:.0f}" + ("" if dtype == base else f" ({rates[s] / medians[base][s]:.2f}x)")
            for s in SETS
        ]
        print(f"| {dtype} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
