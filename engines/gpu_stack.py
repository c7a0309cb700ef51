"""The one GPU stack tei-ort supports, and the start-up checks that hold an install to it.

Every GPU piece agrees on CUDA 13: onnxruntime-gpu 1.31 is built for it (its
``build_and_package_info.cuda_version``), NVIDIA's CUDA 13 runtime wheels ship the libraries
its CUDA provider needs (``nvidia/cu13/lib``; cuDNN 9 keeps ``nvidia/cudnn/lib``), and the
TensorRT wheels are the ``-cu13`` ones, majors 10 and 11. README.md ("GPU") has the same
table; a test holds the two together. A start on anything else is a clear error here,
before a session or an engine half-loads.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from types import ModuleType

from tei_ort.engines.errors import EngineError


@dataclass(frozen=True)
class GpuStack:
    cuda_major: int
    cudnn_major: int
    onnxruntime_gpu: str  # the tested onnxruntime-gpu line (pyproject's gpu extra)
    tensorrt_majors: tuple[int, ...]


STACK = GpuStack(cuda_major=13, cudnn_major=9, onnxruntime_gpu="1.31", tensorrt_majors=(10, 11))

#: onnxruntime-gpu in place of the CPU onnxruntime that tei-ort depends on (both provide the
#: `onnxruntime` module): remove both, then put back onnxruntime-gpu alone
ORT_GPU_SWAP = (
    "pip uninstall -y onnxruntime onnxruntime-gpu && "
    "pip install --no-deps 'onnxruntime-gpu>=1.31.1,<1.32'"
)
#: what to install, as pyproject.toml's extras say it (tei-ort[gpu], tei-ort[tensorrt])
ORT_GPU_INSTALL = (
    "pip install 'tei-ort[gpu]' (onnxruntime-gpu 1.31 for CUDA 13 and the CUDA 13 / cuDNN 9 "
    f"wheels), then {ORT_GPU_SWAP}"
)
TENSORRT_INSTALL = (
    "pip install 'tei-ort[tensorrt]' (tensorrt-cu13 >=10.13,<12; its libraries come "
    "from https://pypi.nvidia.com)"
)
CUDA_RUNTIME_WHEEL = "nvidia-cuda-runtime"  # CUDA 13 wheels have no -cuNN suffix


def supported_tensorrt(version: str) -> str:
    """``version`` when its major is supported; a clear error naming what is, otherwise."""
    try:
        major = int(version.split(".")[0])
    except ValueError as exc:
        raise EngineError(f"cannot read the TensorRT version {version!r}") from exc
    if major not in STACK.tensorrt_majors:
        majors = " and ".join(str(m) for m in STACK.tensorrt_majors)
        raise EngineError(
            f"TensorRT {version} is not supported: tei-ort runs TensorRT {majors} "
            f"(CUDA {STACK.cuda_major}); {TENSORRT_INSTALL}"
        )
    return version


def onnxruntime_packages() -> list[str]:
    """The installed distributions that provide the ``onnxruntime`` module."""
    found = []
    for name in ("onnxruntime", "onnxruntime-gpu"):
        try:
            found.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def check_single_onnxruntime() -> None:
    """One distribution provides the ``onnxruntime`` module (pip lets two overwrite it)."""
    installed = onnxruntime_packages()
    if len(installed) > 1:
        raise EngineError(
            f"both {' and '.join(installed)} are installed and share the `onnxruntime` "
            f"module, so which one loads is undefined: {ORT_GPU_SWAP}"
        )


def check_onnxruntime_cuda(ort: ModuleType) -> None:
    """The imported onnxruntime is one GPU build for CUDA 13, not mixed with the CPU one."""
    info = getattr(getattr(ort, "capi", None), "build_and_package_info", None)
    cuda_version = str(getattr(info, "cuda_version", "") or "")
    package = str(getattr(info, "package_name", "onnxruntime"))
    check_single_onnxruntime()
    if not cuda_version:
        raise EngineError(
            f"this onnxruntime ({package} {ort.__version__}) has no CUDA provider; "
            + ORT_GPU_INSTALL
        )
    if cuda_version.split(".")[0] != str(STACK.cuda_major):
        raise EngineError(
            f"{package} {ort.__version__} is built for CUDA {cuda_version}; tei-ort's GPU "
            f"stack is CUDA {STACK.cuda_major}: " + ORT_GPU_INSTALL
        )
