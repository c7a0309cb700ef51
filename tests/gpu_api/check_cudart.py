"""The CUDA runtime calls of engines/_cudart.py against CUDA 13's headers and library.

Run by tests/unit/test_gpu_api.py in the GPU API venv (``python -m tests.gpu_api.check_cudart``).
The calls are read from our source (every ``cuda*`` attribute called on the loaded library
in engines/_cudart.py and engines/session_check.py, with its argument count); each must be
declared in ``cuda_runtime_api.h`` with that many parameters, and exported by the real
``libcudart.so.13`` of the nvidia-cuda-runtime wheel (which loads without a GPU). The enum
values we pass (``_cudart.ENUMS``) must be the headers' values. The headers are the wheel's
(``nvidia/cu13/include``) and, where present, those of the machine's CUDA toolkit (nvcc).
The wheel layout ``_cudart`` looks for must be the one the wheel has, and the library must
load from it. Prints a JSON report.
"""

from __future__ import annotations

import ast
import ctypes
import json
import os
import re
import shutil
import sys
from pathlib import Path

from tei_ort.engines import _cudart

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("engines/_cudart.py", "engines/session_check.py")


def calls_in(path: Path) -> dict[str, set[int]]:
    """``cuda*`` functions called on a library object -> the argument counts used."""
    found: dict[str, set[int]] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name = node.func.attr
            if re.fullmatch(r"cuda[A-Z]\w*", name):
                found.setdefault(name, set()).add(len(node.args))
    return found


def include_dirs() -> list[Path]:
    found = []
    for base in sys.path:
        candidate = Path(base) / "nvidia" / f"cu{_cudart.CUDA_MAJOR}" / "include"
        if (candidate / "cuda_runtime_api.h").is_file():
            found.append(candidate)
    toolkits = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc is not None:  # nvcc may be a wrapper script: its folder is a guess, not the answer
        toolkits.append(str(Path(nvcc).resolve().parents[1]))
    for toolkit in toolkits:
        include = Path(toolkit).resolve() / "include" if toolkit else None
        if include and (include / "cuda_runtime_api.h").is_file() and include not in found:
            found.append(include)
    return found


def _without_comments(text: str) -> str:
    return re.sub(r"/\*.*?\*/|//[^\n]*", "", text, flags=re.S)


def declared_parameters(header: str, name: str) -> int | None:
    """How many parameters ``name`` is declared with (None: not declared)."""
    match = re.search(rf"\b{name}\s*\(([^;{{]*?)\)\s*;", header)
    if match is None:
        return None
    params = match.group(1).strip()
    return 0 if params in ("", "void") else params.count(",") + 1


def enum_value(header: str, name: str) -> int | None:
    match = re.search(rf"\b{name}\s*=\s*(0x[0-9a-fA-F]+|\d+)", header)
    return None if match is None else int(match.group(1), 0)


def main() -> None:
    problems: list[str] = []
    checked: list[str] = []
    calls: dict[str, set[int]] = {}
    for name in SOURCES:
        for function, counts in calls_in(ROOT / name).items():
            calls.setdefault(function, set()).update(counts)
    wheel_libs = [Path(c) for c in _cudart._candidates() if "/nvidia/" in c and Path(c).is_file()]
    if not wheel_libs:
        problems.append(f"no {_cudart.LIBRARY} where _cudart looks in the wheel layout")
    library = ctypes.CDLL(str(wheel_libs[0])) if wheel_libs else None
    if _cudart.library() is None:
        problems.append("_cudart.library() does not load the CUDA runtime")
    dirs = include_dirs()
    if not dirs:
        problems.append("no cuda_runtime_api.h (wheel or toolkit) to check against")
    for include in dirs:
        api = _without_comments((include / "cuda_runtime_api.h").read_text())
        types = _without_comments((include / "driver_types.h").read_text())
        for function, counts in sorted(calls.items()):
            declared = declared_parameters(api, function)
            checked.append(f"{include}: {function}{sorted(counts)}")
            if declared is None:
                problems.append(f"{function} is not declared in {include}/cuda_runtime_api.h")
            elif counts != {declared}:
                problems.append(
                    f"{function} is called with {sorted(counts)} arguments, declared with "
                    f"{declared} in {include}"
                )
        for enum, value in _cudart.ENUMS.items():
            checked.append(f"{include}: {enum} = {value}")
            if enum_value(types, enum) != value:
                problems.append(f"{enum} is {enum_value(types, enum)} in {include}, not {value}")
    for function in sorted(calls):
        if library is not None and not hasattr(library, function):
            problems.append(f"{wheel_libs[0]} does not export {function}")
    # with no GPU, the query answers None rather than failing
    capability = _cudart.compute_capability(0)
    print(
        json.dumps(
            {
                "library": str(wheel_libs[0]) if wheel_libs else None,
                "include_dirs": [str(d) for d in dirs],
                "calls": sorted(calls),
                "checked": checked,
                "problems": problems,
                "compute_capability": capability,
            }
        )
    )


if __name__ == "__main__":
    main()
