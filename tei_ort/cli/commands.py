"""``tei-ort`` (``serve``, ``build``) and ``text-embeddings-router`` (TEI's command line)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from tei_ort.cli.build import add_build_parser
from tei_ort.cli.flags import add_serve_arguments, add_version_flag, settings_from_args
from tei_ort.cli.ray import add_ray_parsers
from tei_ort.cli.serve import serve


def build_parser(prog: str = "tei-ort") -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The ``tei-ort`` parser and its ``serve`` sub-parser."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="tei-ort: a drop-in replacement for Hugging Face Text Embeddings Inference "
        "on ONNX Runtime.",
    )
    add_version_flag(parser)
    subparsers = parser.add_subparsers(dest="command", required=True)
    serve_parser = subparsers.add_parser(
        "serve",
        help="serve a model over HTTP with TEI's API",
        description="Serve a model over HTTP with TEI's API (the flags of text-embeddings-router).",
    )
    add_serve_arguments(serve_parser)
    serve_parser.set_defaults(handler=_run_serve, parser=serve_parser)
    add_build_parser(subparsers)  # tei-ort build: export an engine ahead of time
    add_ray_parsers(subparsers)  # tei-ort serve-ray, tei-ort embed-corpus (import ray late)
    return parser, serve_parser


def _run_serve(args: argparse.Namespace) -> int:
    return serve(settings_from_args(args.parser, args))


def router_parser(prog: str = "text-embeddings-router") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Text Embeddings Inference's command line, served by tei-ort.",
    )
    add_serve_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser, _ = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


def router_main(argv: Sequence[str] | None = None) -> int:
    parser = router_parser()
    return serve(settings_from_args(parser, parser.parse_args(argv)))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
