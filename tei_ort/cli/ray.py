"""``tei-ort serve-ray`` and ``tei-ort embed-corpus``: the subcommands that run on Ray.

Registered by tei_ort.cli; ray itself is imported only when one of them runs, so the
plain server never loads it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from tei_ort.cli.flags import non_negative_int
from tei_ort.errors import START_ERRORS
from tei_ort.settings import environment

if TYPE_CHECKING:
    from tei_ort.ray_serve import Scaling
    from tei_ort.settings import Settings


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return number


def _add_ray_address(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="The Ray cluster to run on (`auto`, `ray://host:10001`, ...); without it a "
        "local Ray starts on this machine [env: RAY_ADDRESS is read by Ray itself]",
    )


def add_scaling_arguments(parser: argparse.ArgumentParser) -> None:
    _add_ray_address(parser)
    group = parser.add_argument_group("Ray Serve")
    group.add_argument("--min-replicas", type=non_negative_int, default=1, help="[default: 1]")
    group.add_argument("--max-replicas", type=non_negative_int, default=1, help="[default: 1]")
    group.add_argument(
        "--target-ongoing-requests",
        type=_positive_float,
        default=16.0,
        help="Requests in flight per replica that autoscaling aims at [default: 16]",
    )
    group.add_argument(
        "--max-ongoing-requests",
        type=non_negative_int,
        default=64,
        help="The most requests a replica is given at once; Serve queues the rest [default: 64]",
    )
    group.add_argument(
        "--num-cpus",
        type=_positive_float,
        default=1.0,
        help="CPUs each replica reserves; also its engine's threads [default: 1]",
    )


def serve_ray_parser(subparsers: Any = None) -> argparse.ArgumentParser:
    from tei_ort.cli.flags import add_serve_arguments

    description = "Serve a model over HTTP with TEI's API on Ray Serve replicas."
    if subparsers is None:
        parser = argparse.ArgumentParser(prog="tei-ort serve-ray", description=description)
    else:
        parser = subparsers.add_parser(
            "serve-ray", help="serve on Ray Serve replicas", description=description
        )
    add_serve_arguments(parser)
    add_scaling_arguments(parser)
    parser.set_defaults(handler=run_serve_ray, parser=parser)
    return parser


def serve_ray_options(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[Settings, Scaling, str | None]:
    from tei_ort.cli.flags import settings_from_args
    from tei_ort.ray_serve import Scaling

    settings = settings_from_args(parser, args)
    try:
        scaling = Scaling(
            min_replicas=args.min_replicas,
            max_replicas=args.max_replicas,
            target_ongoing_requests=args.target_ongoing_requests,
            max_ongoing_requests=max(1, args.max_ongoing_requests),
            num_cpus=args.num_cpus,
        )
    except START_ERRORS as exc:
        parser.error(str(exc))
    if args.tokenization_workers is None and not environment().get("TOKENIZATION_WORKERS"):
        # the default is the cores of the process that parses: a replica has its own
        settings = replace(settings, tokenization_workers=scaling.threads)
    return settings, scaling, args.ray_address


def run_serve_ray(args: argparse.Namespace) -> int:
    from tei_ort.ray_serve import serve_ray

    settings, scaling, address = serve_ray_options(args.parser, args)
    try:
        return serve_ray(settings, scaling, address)
    except START_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def embed_corpus_parser(subparsers: Any) -> argparse.ArgumentParser:
    from tei_ort.cli.flags import SERVER_FLAGS, add_flags, add_model_arguments, parse_bool

    parser: argparse.ArgumentParser = subparsers.add_parser(
        "embed-corpus",
        help="embed a corpus (JSONL, Parquet, CSV) into Parquet on Ray Data",
        description="Embed every text of a corpus into Parquet files, on Ray Data. A run "
        "killed at any point and started again with the same arguments finishes with exactly "
        "one output row per input id.",
    )
    add_model_arguments(parser)
    add_flags(parser, tuple(f for f in SERVER_FLAGS if f.dest == "max_batch_tokens"))
    parser.add_argument("--input", required=True, help="a file, a directory or a glob")
    parser.add_argument("--output", required=True, help="the output directory")
    parser.add_argument("--text-field", default="text", help="[default: text]")
    parser.add_argument("--id-field", default="id", help="[default: id]")
    parser.add_argument(
        "--no-truncate",
        action="store_true",
        help="refuse texts over the model's input limit (to the rejects file) instead of "
        "truncating them, as /embed does with truncate=false",
    )
    parser.add_argument(
        "--embedding-type",
        choices=("float", "int8", "uint8", "binary", "ubinary"),
        default="float",
        help="the `embedding` column: float32, int8 / uint8 over the model's calibrated "
        "ranges, or binary (int8) / ubinary (uint8) with 8 dimensions per byte, each a "
        'fixed-size list (README "Typed embeddings") [default: float]',
    )
    parser.add_argument(
        "--chunk-size",
        type=non_negative_int,
        default=None,
        help="late chunking: one vector per chunk of this many tokens, pooled from the "
        "whole text's token states (columns chunk_spans, chunk_embeddings) [default: off]",
    )
    parser.add_argument(
        "--chunk-overlap",
        type=non_negative_int,
        default=0,
        help="tokens shared by consecutive chunks [default: 0]",
    )
    parser.add_argument(
        "--late-chunking",
        type=parse_bool,
        default=True,
        metavar="true|false",
        help="false: embed each chunk on its own (the baseline) [default: true]",
    )
    _add_ray_address(parser)
    parser.add_argument(
        "--num-workers", type=non_negative_int, default=1, help="engine actors [default: 1]"
    )
    parser.add_argument(
        "--cpus-per-worker",
        type=_positive_float,
        default=1.0,
        help="CPUs each engine actor reserves; also its engine's threads [default: 1]",
    )
    parser.add_argument(
        "--rows-per-file",
        type=non_negative_int,
        default=4096,
        help="rows per output part file (the unit of work a restart may redo) [default: 4096]",
    )
    parser.add_argument(
        "--progress",
        type=parse_bool,
        default=sys.stderr.isatty(),
        metavar="true|false",
        help="a progress bar on stderr [default: when stderr is a terminal]",
    )
    parser.set_defaults(handler=run_embed_corpus, parser=parser)
    return parser


def run_embed_corpus(args: argparse.Namespace) -> int:
    from tei_ort.cli.flags import MODEL_FLAGS, SERVER_FLAGS, settings_from_args
    from tei_ort.corpus.inputs import Fields
    from tei_ort.corpus.run import CorpusJob, run_corpus
    from tei_ort.model.loading import ModelOptions

    flags = MODEL_FLAGS + tuple(f for f in SERVER_FLAGS if f.dest == "max_batch_tokens")
    settings = settings_from_args(args.parser, args, flags)
    if args.num_workers < 1 or args.rows_per_file < 1:
        args.parser.error("--num-workers and --rows-per-file must be at least 1")
    if args.chunk_size is not None and not 0 <= args.chunk_overlap < args.chunk_size:
        args.parser.error("--chunk-size must be at least 1 and above --chunk-overlap")
    job = CorpusJob(
        input=args.input,
        output=args.output,
        model=ModelOptions.from_settings(settings),
        fields=Fields(text=args.text_field, id=args.id_field),
        truncate=not args.no_truncate,
        embedding_type=args.embedding_type,
        max_batch_tokens=settings.max_batch_tokens,
        num_workers=args.num_workers,
        cpus_per_worker=args.cpus_per_worker,
        rows_per_file=args.rows_per_file,
        ray_address=args.ray_address,
        progress=args.progress,
        chunk_size=args.chunk_size,
        chunk_overlap=args.chunk_overlap,
        late_chunking=args.late_chunking,
    )
    try:
        summary = run_corpus(job)
    except START_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


def add_ray_parsers(subparsers: Any) -> None:
    serve_ray_parser(subparsers)
    embed_corpus_parser(subparsers)
