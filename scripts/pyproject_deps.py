"""Print tei-ort's requirements from pyproject.toml, one per line, for `pip install -r`.

    python3 scripts/pyproject_deps.py            # [project] dependencies
    python3 scripts/pyproject_deps.py gpu        # ... and the `gpu` extra's
    python3 scripts/pyproject_deps.py --drop onnxruntime gpu   # without a distribution
                                                 # (onnxruntime-gpu provides the same module)
    python3 scripts/pyproject_deps.py --add 'nvidia-cublas>=13,<14' gpu   # and one more
    python3 scripts/pyproject_deps.py --list model-packages   # a list of [tool.tei-ort]

The images install these before the sources are copied, so that an edit of the sources
rebuilds one small layer, not the whole virtual environment; the Makefile reads the model
packages with --list. Standard library only (Python 3.11's tomllib): it runs before
anything is installed.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import tomllib

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _pyproject() -> dict[str, Any]:
    return tomllib.loads(PYPROJECT.read_text())


def tool_list(name: str) -> list[str]:
    """A list under [tool.tei-ort] (model-packages, test-model-packages)."""
    table = _pyproject().get("tool", {}).get("tei-ort", {})
    if name not in table:
        raise SystemExit(
            f"pyproject.toml's [tool.tei-ort] has no {name!r} (it has {sorted(table)})"
        )
    return list(table[name])


def requirements(
    extras: list[str], drop: frozenset[str] = frozenset(), add: tuple[str, ...] = ()
) -> list[str]:
    project = _pyproject()["project"]
    found = list(project["dependencies"])
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        if extra not in optional:
            raise SystemExit(f"pyproject.toml has no extra {extra!r} (it has {sorted(optional)})")
        found += optional[extra]
    return [r for r in found if _name(r) not in drop] + list(add)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("extras", nargs="*")
    parser.add_argument("--drop", action="append", default=[], help="a distribution to leave out")
    parser.add_argument("--add", action="append", default=[], help="a requirement to add")
    parser.add_argument("--list", metavar="NAME", help="print a list of [tool.tei-ort] instead")
    args = parser.parse_args()
    if args.list:
        print("\n".join(tool_list(args.list)))
        raise SystemExit(0)
    drop = frozenset(n.lower() for n in args.drop)
    print("\n".join(requirements(args.extras, drop, tuple(args.add))))
