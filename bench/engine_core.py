"""Engine-core figures for all-MiniLM-L6-v2: cold build, cached load, throughput.

Each measurement runs in a fresh process (torch and ONNX Runtime in one process fight
for the cores); medians of ``--repeats`` runs. Throughput: 256 texts of ~128 tokens,
tei-ort's in-process API next to sentence-transformers ``encode`` (batch 32), same run.

    .venv/bin/python -m bench.engine_core [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from bench.texts import text_sets
from tei_ort.model.hub import default_model_path

TEXTS = 256

_BUILD = """
import json, sys, time
from tei_ort.model.loading import ModelOptions, load_model
t = time.perf_counter()
model = load_model(ModelOptions(model_id=sys.argv[1], engine_cache=sys.argv[2]))
print(json.dumps({"total": time.perf_counter() - t, "built": model.built, **model.seconds}))
"""

_TEI = """
import json, sys, time
import tei_ort
texts = json.load(open(sys.argv[3]))
model = tei_ort.load(sys.argv[1], engine_cache=sys.argv[2])
model.embed(texts[:32])
t = time.perf_counter(); model.embed(texts); print(json.dumps(time.perf_counter() - t))
"""

_ST = """
import json, sys, time
import torch
from sentence_transformers import SentenceTransformer
texts = json.load(open(sys.argv[3]))
model = SentenceTransformer(sys.argv[1], device="cpu")
model.encode(texts[:32], batch_size=32)
t = time.perf_counter()
model.encode(texts, batch_size=32)
print(json.dumps(time.perf_counter() - t))
"""


def _run(code: str, *args: str) -> Any:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    repeats = parser.parse_args().repeats
    model = str(default_model_path())
    texts = (text_sets(Path(model) / "tokenizer.json")["t128"] * 2)[:TEXTS]
    with tempfile.TemporaryDirectory() as tmp:
        texts_file = Path(tmp) / "texts.json"
        texts_file.write_text(json.dumps(texts))
        cold: list[dict[str, float]] = []
        cached: list[dict[str, float]] = []
        for i in range(repeats):
            cache = str(Path(tmp) / f"cache{i}")
            cold.append(_run(_BUILD, model, cache))
            cached.append(_run(_BUILD, model, cache))
        tei = [
            _run(_TEI, model, str(Path(tmp) / "cache0"), str(texts_file)) for _ in range(repeats)
        ]
        st: list[float] = [_run(_ST, model, "", str(texts_file)) for _ in range(repeats)]

    def median(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(float(r[key]) for r in rows)

    tei_rate = TEXTS / statistics.median(tei)
    st_rate = TEXTS / statistics.median(st)
    print(f"all-MiniLM-L6-v2, medians of {repeats} runs, each in its own process")
    print(
        f"cold start (export + load + warm-up): {median(cold, 'total'):.2f} s "
        f"(export {median(cold, 'export'):.2f} s, load {median(cold, 'load'):.2f} s)"
    )
    print(
        f"cached start (lookup + load + warm-up): {median(cached, 'total'):.2f} s "
        f"(load {median(cached, 'load'):.2f} s)"
    )
    print(
        f"{TEXTS} texts of ~128 tokens: tei-ort {tei_rate:.1f} texts/s, "
        f"sentence-transformers {st_rate:.1f} texts/s, ratio {tei_rate / st_rate:.2f}x"
    )


if __name__ == "__main__":
    main()
