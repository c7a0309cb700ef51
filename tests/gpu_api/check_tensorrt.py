"""TensorRT's real Python bindings, loaded without a GPU, against every ``trt`` use of ours.

Run by tests/unit/test_gpu_api.py in the GPU API venv:
``python -m tests.gpu_api.check_tensorrt BINDINGS_DIR [--source FILE ...]``. The bindings wheel
(tensorrt-cu13-bindings) links libnvinfer / libnvinfer_plugin / libnvonnxparser, which come
from NVIDIA's own index and need a GPU to do anything. Stand-ins are built here with gcc:
libraries with the same sonames that define the symbols the bindings import (read from the
bindings' own dynamic symbol table), each a function returning 0. They are loaded first, so
the dynamic loader takes them for the real ones; the bindings then import and list their
classes, enums and signatures, which is all the check reads (it never builds or runs).
Prints a JSON report.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.gpu_api.calls import scan_files

ROOT = Path(__file__).resolve().parents[2]
#: our code that calls TensorRT (the engine, the build, the version check)
SOURCES = ("engines/trt_engine.py", "exporters/tensorrt.py", "engines/trt_profiles.py")


def needed_libraries(binary: Path) -> list[str]:
    out = subprocess.run(["readelf", "-d", str(binary)], capture_output=True, text=True, check=True)
    return re.findall(r"\(NEEDED\)\s+Shared library: \[(libnv[^\]]+)\]", out.stdout)


def imported_symbols(binary: Path) -> list[str]:
    """Unversioned functions and objects the binary imports that this process does not have."""
    out = subprocess.run(
        ["readelf", "--dyn-syms", "-W", str(binary)], capture_output=True, text=True, check=True
    )
    process = ctypes.CDLL(None)
    found = []
    for line in out.stdout.splitlines():
        fields = line.split()
        if len(fields) < 8 or fields[6] != "UND" or fields[3] not in ("FUNC", "OBJECT"):
            continue
        name = fields[7]
        if "@" in name or hasattr(process, name):
            continue
        found.append(name)
    return sorted(set(found))


def build_stand_ins(binary: Path, out_dir: Path) -> list[Path]:
    """Stand-in libraries for the bindings' NVIDIA dependencies, loaded globally."""
    libraries = needed_libraries(binary)
    symbols = imported_symbols(binary)
    built = []
    for index, soname in enumerate(libraries):
        source = out_dir / f"{soname}.c"
        # every imported symbol goes in the first library; the others only carry a soname
        body = [f"void *{name}(void) {{ return 0; }}" for name in symbols] if index == 0 else []
        source.write_text("\n".join(["/* stand-in: returns 0 */", *body]) + "\n")
        target = out_dir / soname
        subprocess.run(
            ["gcc", "-shared", "-fPIC", "-o", str(target), f"-Wl,-soname,{soname}", str(source)],
            check=True,
        )
        built.append(target)
    for path in built:
        ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    return built


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("bindings", type=Path, help="a folder holding tensorrt_bindings/")
    parser.add_argument("--source", type=Path, action="append", help="scan these files instead")
    args = parser.parse_args()
    binary = args.bindings / "tensorrt_bindings" / "tensorrt.so"
    with tempfile.TemporaryDirectory(prefix="trt-stand-ins-") as tmp:
        stand_ins = build_stand_ins(binary, Path(tmp))
        sys.path.insert(0, str(args.bindings))
        trt = importlib.import_module("tensorrt_bindings")
        sys.modules["tensorrt"] = trt  # what `import tensorrt` gives with tensorrt-cu13
        from tei_ort.engines.errors import EngineError
        from tei_ort.engines.gpu_stack import supported_tensorrt

        try:
            supported_tensorrt(str(trt.__version__))
            version_error = ""
        except EngineError as exc:
            version_error = str(exc)
        files = args.source or [ROOT / name for name in SOURCES]
        report = scan_files(
            trt,
            files,
            ROOT if not args.source else Path("/"),
            module_names={"trt"},
            binders={"import_tensorrt"},
        )
        print(
            json.dumps(
                {
                    "version": str(trt.__version__),
                    "version_error": version_error,
                    "stand_ins": [p.name for p in stand_ins],
                    "checked": [str(f) for f in report.checked],
                    "problems": [str(f) for f in report.problems],
                    "untyped": [str(f) for f in report.untyped],
                }
            )
        )


if __name__ == "__main__":
    main()
