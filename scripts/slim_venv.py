"""Remove from an image's virtual environment what tei-ort never loads, and say how much.

    /opt/venv/bin/python scripts/slim_venv.py    # the environment of the interpreter

Measured on the CPU image's environment (docs/docker.md, "Size"): the packages' own test
suites and test data, OpenVINO's plugins for devices other than the CPU (GPU, NPU) and its
readers for formats other than ONNX (tei-ort hands OpenVINO an ONNX graph or its own
compiled blob), the GPU plugin's kernel cache, and ONNX Runtime's C API library. Each
removal is a named path or pattern, so a package that moves a file makes this say "not
present", never removes something else.
`make image-test` then runs the image (OpenVINO bf16 where the CPU has it, ONNX Runtime
float32 with token packing, which needs sympy) to show nothing needed went. Standard
library only: it runs in the image build.
"""

from __future__ import annotations

import shutil
import sys
import sysconfig
from pathlib import Path

#: directories named so, anywhere in site-packages: test suites no code imports at run time
#: (numpy.testing and the like, which libraries do import, are not among them)
TEST_DIRS = frozenset({"tests"})

#: paths relative to site-packages
PATHS = (
    "onnx/backend/test/data",  # onnx's conformance models (13 MB)
    "openvino/libs/libopenvino_intel_gpu_plugin.so",
    "openvino/libs/libopenvino_intel_npu_plugin.so",
    "openvino/libs/cache.json",  # the GPU plugin's kernel tuning cache
)

#: globs relative to site-packages
GLOBS = (
    # ONNX Runtime's C API library: the Python module is linked without it (its own copy of
    # the runtime) and loads it nowhere (34 MB)
    "onnxruntime/capi/libonnxruntime.so*",
)

#: OpenVINO's frontends other than ONNX's, by prefix (their file names carry the version)
OPENVINO_FRONTENDS = (
    "libopenvino_tensorflow_frontend",
    "libopenvino_tensorflow_lite_frontend",
    "libopenvino_pytorch_frontend",
    "libopenvino_paddle_frontend",
    "libopenvino_jax_frontend",
    "libopenvino_gguf_frontend",
)


def _size(path: Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file())


def _remove(path: Path) -> int:
    size = _size(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    return size


def targets(site: Path) -> list[Path]:
    found = [p for p in site.rglob("*") if p.is_dir() and p.name in TEST_DIRS]
    found = [p for p in found if not any(parent in found for parent in p.parents)]
    found += [site / rel for rel in PATHS if (site / rel).exists()]
    found += [p for pattern in GLOBS for p in site.glob(pattern)]
    libs = site / "openvino" / "libs"
    if libs.is_dir():
        found += [p for p in libs.iterdir() if p.name.startswith(OPENVINO_FRONTENDS)]
    return found


def main() -> None:
    if sys.prefix == sys.base_prefix:
        raise SystemExit("run this with the virtual environment's python, not the system's")
    site = Path(sysconfig.get_path("purelib"))
    if not site.is_dir():
        raise SystemExit(f"no site-packages at {site}")
    for rel in PATHS:
        if not (site / rel).exists():
            print(f"slim_venv: not present: {rel}")
    before = _size(site)
    removed = sum(_remove(p) for p in targets(site))
    print(
        f"slim_venv: {site}: removed {removed / 2**20:.0f} MiB "
        f"({before / 2**20:.0f} -> {(before - removed) / 2**20:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
