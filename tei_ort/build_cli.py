"""``tei-ort build``: export a model's engine into the cache ahead of time.

Runs the same resolve -> inspect -> cache lookup -> export path as ``serve`` and stops
before loading, so an image build or an init container can pay the export once.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from tei_ort.errors import TeiOrtError

#: ``--target`` -> execution provider
TARGETS = {"cpu": "cpu", "cuda": "cuda", "trt": "tensorrt"}

#: (flag, env var, help) for the model flags that decide which engine is built
MODEL_FLAGS: tuple[tuple[str, str, str], ...] = (
    ("--model-id", "MODEL_ID", "hub id or local directory (default: all-MiniLM-L6-v2)"),
    ("--revision", "REVISION", "hub revision (branch, tag or commit)"),
    ("--dtype", "DTYPE", "float32 (CPU default), float16 (GPU default), int8"),
    ("--pooling", "POOLING", "cls, mean, splade or last-token (overrides the model's)"),
    ("--dense-path", "DENSE_PATH", "folder of the Dense module to use"),
    ("--hf-token", "HF_TOKEN", "Hugging Face Hub token"),
    ("--huggingface-hub-cache", "HUGGINGFACE_HUB_CACHE", "Hugging Face cache directory"),
    (
        "--engine-cache",
        "ENGINE_CACHE",
        "engine cache directory (default: <hub cache>/tei-ort-engines)",
    ),
)


def add_build_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "build",
        help="export a model's engine into the engine cache ahead of time",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for flag, env, text in MODEL_FLAGS:
        parser.add_argument(flag, default=os.environ.get(env), help=f"{text} [env: {env}]")
    parser.add_argument(
        "--target",
        choices=sorted(TARGETS),
        default=os.environ.get("TARGET"),
        help="cpu (ONNX Runtime, float32), cuda (ONNX Runtime CUDA, float16) or trt "
        "(TensorRT engine for this GPU, float16) [env: TARGET]",
    )
    parser.add_argument(
        "--execution-provider",
        "--provider",
        dest="execution_provider",
        default=os.environ.get("EXECUTION_PROVIDER"),
        help="cpu, cuda, tensorrt, cann, coreml or openvino; overrides --target "
        "[env: EXECUTION_PROVIDER]",
    )
    # TensorRT profiles and GPU buffers are sized from the server's batch limits: build
    # with the values the server will run with, or it rebuilds the engine at start-up
    for flag, env, default in (
        ("--max-batch-tokens", "MAX_BATCH_TOKENS", "16384"),
        ("--max-batch-requests", "MAX_BATCH_REQUESTS", None),
    ):
        parser.add_argument(
            flag, type=int, default=os.environ.get(env, default), help=f"as serve's [env: {env}]"
        )
    parser.set_defaults(handler=run_build)
    return parser


class _Progress:
    """One line per step on stderr, with the time since the build started."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.start:6.1f}s] {message}", file=sys.stderr, flush=True)


def run_build(args: argparse.Namespace) -> int:
    from tei_ort.loading import ModelOptions, prepare_engine
    from tei_ort.settings import parse_pooling

    progress = _Progress()
    try:
        options = ModelOptions(
            model_id=args.model_id,
            revision=args.revision,
            hf_token=args.hf_token,
            huggingface_hub_cache=args.huggingface_hub_cache,
            pooling=parse_pooling(args.pooling) if args.pooling else None,
            dense_path=args.dense_path,
            dtype=args.dtype,
            engine_cache=args.engine_cache,
            provider=args.execution_provider or TARGETS.get(args.target or "cpu"),
            max_batch_tokens=int(args.max_batch_tokens),
            max_batch_requests=(
                int(args.max_batch_requests) if args.max_batch_requests is not None else None
            ),
        )
        prepared = prepare_engine(options, progress)
    except TeiOrtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    progress("done" if prepared.built else "done (already in the cache)")
    print(prepared.entry_dir)
    return 0
