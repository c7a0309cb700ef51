"""Print tei-ort's requirements from pyproject.toml, one per line, for `pip install -r`.

    python3 scripts/pyproject_deps.py            # [project] dependencies
    python3 scripts/pyproject_deps.py gpu        # ... and the `gpu` extra's
    python3 scripts/pyproject_deps.py --drop onnxruntime gpu   # without a distribution
                                                 # (onnxruntime-gpu provides the same module)
    python3 scripts/pyproject_deps.py --add 'nvidia-cublas>=13,<14' gpu   # and one more

The images install these before the sources are copied (Makefile `deps`), so that an edit
of the sources rebuilds one small layer, not the whole virtual environment. Standard
library only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import tomllib

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def requirements(
    extras: list[str], drop: frozenset[str] = frozenset(), add: tuple[str, ...] = ()
) -> list[str]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
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
    args = parser.parse_args()
    drop = frozenset(n.lower() for n in args.drop)
    print("\n".join(requirements(args.extras, drop, tuple(args.add))))
