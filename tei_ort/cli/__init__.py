"""``tei-ort`` (serve, build) and ``text-embeddings-router``: the command lines."""

from tei_ort.cli.commands import main, router_main

__all__ = ["main", "router_main"]
