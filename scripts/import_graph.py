"""Print the import graph between tei-ort's packages, one edge per line with its count.

    .venv/bin/python scripts/import_graph.py            # this checkout (one root: tei_ort)
    .venv/bin/python scripts/import_graph.py --old DIR  # a checkout from before the layers
                                                        # (three roots: tei_ort, exporters,
                                                        # engines), e.g. a git worktree

Modules are grouped to their package two levels down (``tei_ort.serving``,
``tei_ort.engines``); an edge ``a -> b (n)`` means n imports from modules of a to b.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter

import grimp


def group(module: str) -> str:
    """``tei_ort.serving.infer`` -> ``tei_ort.serving``; ``engines.base`` -> ``engines``."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "tei_ort" else parts[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", metavar="DIR", help="a checkout with three top-level roots")
    args = parser.parse_args()
    roots: tuple[str, ...] = ("tei_ort",)
    if args.old:
        sys.path.insert(0, args.old)
        roots = ("tei_ort", "exporters", "engines")
    graph = grimp.build_graph(*roots)
    edges: Counter[tuple[str, str]] = Counter()
    for importer in graph.modules:
        for imported in graph.find_modules_directly_imported_by(importer):
            a, b = group(importer), group(imported)
            if a != b:
                edges[(a, b)] += 1
    for (a, b), count in sorted(edges.items()):
        print(f"{a} -> {b} ({count})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
