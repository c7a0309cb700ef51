"""CPU seconds per text of each method at one thread, interleaved in one process.

    .venv/bin/python bench/cpu_seconds.py [--model DIR] [--repeats 3] [--methods ...]

On a shared machine wall-clock rates move with the neighbours' load (bench/README.md);
the CPU time a method spends on a fixed set of texts, at one thread (nothing to spin on,
nothing to wait for), moves much less. Methods run in turns, set by set, so a change in
load hits all of them alike. Texts per CPU-second is printed per set, with each method's
ratio to sentence-transformers float32 and bfloat16.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import SETS, default_model  # noqa: E402
from bench.texts import text_sets  # noqa: E402

MAX_LENGTH = 256
BATCH = 32

Embed = Callable[[Sequence[str]], Any]


def sentence_transformers(model: Path, bf16: bool) -> Embed:
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(1)
    st = SentenceTransformer(str(model), device="cpu")
    st.max_seq_length = MAX_LENGTH
    if bf16:
        st = st.to(torch.bfloat16)

    def embed(texts: Sequence[str]) -> Any:
        with torch.inference_mode():
            return st.encode(list(texts), batch_size=BATCH, normalize_embeddings=True)

    return embed


def tei(model: Path, dtype: str, cache: str) -> Embed:
    import tei_ort

    loaded = tei_ort.load(str(model), engine_cache=cache, dtype=dtype, threads=1)
    return loaded.embed  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--methods", nargs="+", default=["st", "st-bf16", "tei-float32", "tei-bfloat16"]
    )
    args = parser.parse_args()
    model = args.model or default_model()
    sets = text_sets(model / "tokenizer.json")
    with tempfile.TemporaryDirectory(prefix="tei-ort-cpu-") as cache:
        methods: dict[str, Embed] = {}
        for name in args.methods:
            if name.startswith("st"):
                methods[name] = sentence_transformers(model, bf16=name == "st-bf16")
            else:
                methods[name] = tei(model, name.removeprefix("tei-"), cache)
        for embed in methods.values():
            embed(sets["short"][:64])  # warm up
        rates: dict[tuple[str, str], float] = {}
        for set_name in SETS:
            texts = sets[set_name]
            seconds: dict[str, list[float]] = {name: [] for name in methods}
            for _ in range(args.repeats):
                for name, embed in methods.items():
                    start = time.process_time()
                    embed(texts)
                    seconds[name].append(time.process_time() - start)
            for name in methods:
                rates[(name, set_name)] = len(texts) / statistics.median(seconds[name])
    print("| method | set | texts per CPU-s | x ST | x ST bf16 |")
    print("|---|---|---:|---:|---:|")
    for (name, set_name), rate in rates.items():
        ratios = [
            f"{rate / rates[(peer, set_name)]:.2f}" if (peer, set_name) in rates else "-"
            for peer in ("st", "st-bf16")
        ]
        print(f"| {name} | {set_name} | {rate:.1f} | {ratios[0]} | {ratios[1]} |")


if __name__ == "__main__":
    main()
