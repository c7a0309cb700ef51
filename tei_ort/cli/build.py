"""``tei-ort build``: export a model's engine into the cache ahead of time.

Runs the same resolve -> inspect -> cache lookup -> export path as ``serve``, so an image
build or an init container can pay the export once. For an embedding model it then loads
the engine once to compute the int8 / uint8 calibration vectors into the entry (skipped,
with a message, where the target's engine cannot run on this machine: the server's first
start computes them then).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import replace
from typing import Any

from tei_ort.cli.flags import (
    MODEL_FLAGS,
    SERVER_FLAGS,
    Flag,
    add_flags,
    add_model_arguments,
    settings_from_args,
)
from tei_ort.cli.progress import download_bar, make_progress
from tei_ort.errors import START_ERRORS
from tei_ort.exporters.progress import Progress
from tei_ort.settings import environment

#: ``--target`` -> execution provider
TARGETS = {"cpu": "cpu", "cuda": "cuda", "trt": "tensorrt"}


def add_build_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "build",
        help="export a model's engine into the engine cache ahead of time",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_arguments(parser)
    # TensorRT profiles and GPU buffers are sized from the server's batch limits: build
    # with the values the server will run with, or it rebuilds the engine at start-up
    add_flags(parser, _batch_flags())
    parser.add_argument(
        "--target",
        choices=sorted(TARGETS),
        default=environment().get("TARGET"),
        help="cpu (ONNX Runtime, float32), cuda (ONNX Runtime CUDA, float16) or trt "
        "(TensorRT engine for this GPU, float16); --execution-provider wins [env: TARGET]",
    )
    parser.set_defaults(handler=run_build, parser=parser)
    return parser


def _batch_flags() -> tuple[Flag, ...]:
    """serve's batch-limit flags (GPU engines are sized from them) and --json-output."""
    names = ("max_batch_tokens", "max_batch_requests", "json_output")
    return tuple(f for f in SERVER_FLAGS if f.dest in names)


class _Steps:
    """One line per step on stderr, with the time since the build started."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.start:6.1f}s] {message}", file=sys.stderr, flush=True)


def _progress(json_output: bool) -> Progress:
    """Bars and step lines on stderr; with --json-output, JSON log lines on stdout."""
    if json_output:
        from tei_ort.log import setup_logging

        setup_logging(json_output=True)
        return make_progress(logging.getLogger("tei_ort").info, json_output=True, stream=sys.stderr)
    return make_progress(_Steps(), json_output=False, stream=sys.stderr)


def run_build(args: argparse.Namespace) -> int:
    from tei_ort.model.loading import ModelOptions, prepare_engine

    settings = settings_from_args(args.parser, args, MODEL_FLAGS + _batch_flags())
    if settings.execution_provider is None and args.target is not None:
        settings = replace(settings, execution_provider=TARGETS[args.target])
    progress = _progress(settings.json_output)
    for each in settings.model_settings():  # every --model-id given, in order
        try:
            options = ModelOptions.from_settings(each)
            prepared = prepare_engine(options, progress, download_bar=download_bar(progress))
        except START_ERRORS as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        try:
            _calibrate(options, prepared, progress)
        except START_ERRORS as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        progress("done" if prepared.built else "done (already in the cache)")
        print(prepared.entry_dir, flush=True)
    return 0


def _calibrate(options: Any, prepared: Any, progress: Progress) -> None:
    """The int8 / uint8 calibration vectors of an embedding model, into its entry."""
    from tei_ort.errors import EngineError
    from tei_ort.serving.calibration import calibratable

    if not calibratable(prepared.info):
        return
    from tei_ort.api import Model
    from tei_ort.model.loading import load_model

    try:
        model = Model(load_model(options), max_batch_tokens=options.max_batch_tokens)
    except EngineError as exc:
        progress(f"not calibrating int8/uint8 here ({exc}): the server's first start will")
        return
    try:
        calibration = model.calibrator.get()
    finally:
        model.close()
    where = "stored in the entry" if calibration.stored else "the cache is read-only: not stored"
    progress(f"int8/uint8 calibration: {calibration.vectors.shape[0]} texts ({where})")
