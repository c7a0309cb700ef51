"""The bf16 graph against torch bf16 on fixed shapes, each method in its own process.

    .venv/bin/python bench/shape_rates.py [--model DIR] [--shapes 32x16 16x128 8x256] [--repeats 12]

What `bench/run.py`'s in-process ratios to sentence-transformers bf16 come down to, without
tokenization, sorting or pooling: one forward pass of a (batch, length) shape, all tokens
real, median wall time over ``--repeats`` calls at the machine's cores. Methods:

- ``torch-bf16``: the transformers model in bfloat16 (SDPA attention), as
  sentence-transformers runs it;
- ``openvino``: tei-ort's plain-opset export compiled as the bf16 engine compiles it
  (dynamic batch and length);
- ``openvino-static``: the same graph compiled for the one shape (what a per-shape
  compiled model would give; the engine does not do this).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import default_model  # noqa: E402

METHODS = ("torch-bf16", "openvino", "openvino-static")
Shape = tuple[int, int]
Forward = Callable[[dict[str, Any]], Any]


def parse_shape(text: str) -> Shape:
    batch, length = text.lower().split("x")
    return int(batch), int(length)


def feeds(shape: Shape, vocab: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, vocab, shape)  # (B, T)
    return {
        "input_ids": ids,
        "attention_mask": np.ones(shape, np.int64),
        "token_type_ids": np.zeros(shape, np.int64),
    }


def torch_forward(model: Path) -> Callable[[Shape], Forward]:
    import torch
    from transformers import AutoModel

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    net = AutoModel.from_pretrained(str(model), attn_implementation="sdpa")
    net = net.to(torch.bfloat16).eval()

    def for_shape(_: Shape) -> Forward:
        def forward(feed: dict[str, Any]) -> Any:
            with torch.inference_mode():
                return net(**{k: torch.from_numpy(v) for k, v in feed.items()})

        return forward

    return for_shape


def openvino_forward(model: Path, static: bool, workdir: Path) -> Callable[[Shape], Forward]:
    from tei_ort.engines.openvino_engine import compile_config
    from tei_ort.engines.openvino_runtime import import_openvino
    from tei_ort.exporters.export import Variant, export_to_file
    from tei_ort.model.info import Head

    ov = import_openvino()
    config = json.loads((model / "config.json").read_text())
    graph = workdir / "model.onnx"
    export_to_file(config, [model / "model.safetensors"], Head.BASE, graph, Variant.PLAIN)
    core = ov.Core()
    settings = compile_config("bfloat16", None)
    read = core.read_model(str(graph))
    dynamic = None if static else core.compile_model(read, "CPU", settings)

    def for_shape(shape: Shape) -> Forward:
        compiled = dynamic
        if compiled is None:
            fixed = read.clone()
            fixed.reshape({port.get_any_name(): list(shape) for port in fixed.inputs})
            compiled = core.compile_model(fixed, "CPU", settings)
        request = compiled.create_infer_request()
        return lambda feed: request.infer(feed)

    return for_shape


def run_method(method: str, model: Path, shapes: list[Shape], repeats: int) -> None:
    with tempfile.TemporaryDirectory(prefix="shape-rates-") as workdir:
        if method == "torch-bf16":
            prepare = torch_forward(model)
        else:
            prepare = openvino_forward(model, method == "openvino-static", Path(workdir))
        time_shapes(method, prepare, model, shapes, repeats)


def time_shapes(
    method: str, prepare: Callable[[Shape], Forward], model: Path, shapes: list[Shape], repeats: int
) -> None:
    vocab = json.loads((model / "config.json").read_text())["vocab_size"]
    for shape in shapes:
        forward = prepare(shape)
        feed = feeds(shape, vocab)
        for _ in range(3):  # first calls build kernels for the shape
            forward(feed)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            forward(feed)
            times.append(time.perf_counter() - start)
        row = {"method": method, "shape": list(shape), "ms": statistics.median(times) * 1e3}
        print(json.dumps(row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--shapes", nargs="+", default=["32x16", "16x128", "8x256"])
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--method", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    model = args.model or default_model()
    shapes = [parse_shape(s) for s in args.shapes]
    if args.method:
        run_method(args.method, model, shapes, args.repeats)
        return
    ms: dict[tuple[str, Shape], float] = {}
    for method in METHODS:
        command = [sys.executable, __file__, "--method", method, "--model", str(model)]
        command += ["--repeats", str(args.repeats), "--shapes", *args.shapes]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        for line in out.splitlines():
            row = json.loads(line)
            ms[(row["method"], (row["shape"][0], row["shape"][1]))] = row["ms"]
    names = " | ".join(f"{m} ms" for m in METHODS)
    print(f"| shape | {names} | openvino x torch | static x torch |")
    print("|---|" + "---:|" * (len(METHODS) + 2))
    for shape in shapes:
        torch_ms, dyn_ms, static_ms = (ms[(m, shape)] for m in METHODS)
        cells = " | ".join(f"{ms[(m, shape)]:.1f}" for m in METHODS)
        ratios = f"{torch_ms / dyn_ms:.2f} | {torch_ms / static_ms:.2f}"
        print(f"| {shape[0]} x {shape[1]} | {cells} | {ratios} |")


if __name__ == "__main__":
    main()
