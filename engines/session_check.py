"""No silent CPU fall back: a session runs on the provider asked for, or start-up fails.

``get_available_providers()`` lists CUDA whenever onnxruntime-gpu is installed; when the
CUDA provider library cannot load (a missing CUDA 13 / cuDNN library, no driver, no GPU)
ONNX Runtime logs a warning and builds a CPU session. Before a GPU session the NVIDIA
wheels' libraries are preloaded (ONNX Runtime's ``preload_dlls``: the provider library has
no search path of its own); after it, the session's providers are checked and anything
else is an error that names the cause: the library the dynamic loader could not find (the
message ONNX Runtime logs, taken from the same ``dlopen``) or the CUDA runtime's answer
when the libraries load but no GPU does.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import warnings
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import onnxruntime as ort

from tei_ort.engines.errors import ProviderStartError
from tei_ort.engines.gpu_stack import ORT_GPU_INSTALL, check_onnxruntime_cuda

CUDA_PROVIDER = "CUDAExecutionProvider"
#: ONNX Runtime provider -> the library file ONNX Runtime loads for it (onnxruntime/capi)
PROVIDER_LIBRARIES = {CUDA_PROVIDER: "libonnxruntime_providers_cuda.so"}


@cache
def preload_cuda() -> str:
    """Load the NVIDIA wheels' CUDA and cuDNN libraries once; what ONNX Runtime printed."""
    printed = io.StringIO()
    # it prints what fails to load, and warns when a bundled plugin provider does not register
    with contextlib.redirect_stdout(printed), warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        ort.preload_dlls(cuda=True, cudnn=True, msvc=False)
    return "\n".join([printed.getvalue().strip(), *(str(w.message) for w in warned)]).strip()


def prepare(providers: Sequence[str]) -> None:
    """Before a session: hold a CUDA session to the one stack, load its libraries."""
    if CUDA_PROVIDER in providers:
        check_onnxruntime_cuda(ort)
        preload_cuda()


def library_error(provider: str) -> str | None:
    """Why the provider's library does not load (the dynamic loader's message), if it does not."""
    name = PROVIDER_LIBRARIES.get(provider)
    if name is None:
        return None
    path = Path(ort.__file__).parent / "capi" / name
    if not path.is_file():
        return f"{path} is missing (a CPU build of onnxruntime?)"
    try:
        ctypes.CDLL(str(path))
    except OSError as exc:
        return str(exc)
    return None


def gpus() -> tuple[int, str]:
    """How many GPUs the CUDA runtime sees (0 on any failure), and its words for it."""
    from tei_ort.engines import _cudart

    lib = _cudart.library()
    if lib is None:
        return 0, f"the CUDA runtime ({_cudart.LIBRARY}) does not load"
    count = ctypes.c_int(0)
    status = int(lib.cudaGetDeviceCount(ctypes.byref(count)))
    if status != 0:
        lib.cudaGetErrorString.restype = ctypes.c_char_p
        text = (lib.cudaGetErrorString(status) or b"").decode()
        return 0, f"cudaGetDeviceCount failed with error {status}: {text}"
    return count.value, f"the CUDA runtime sees {count.value} GPU(s)"


def verify(session: Any, providers: Sequence[str], what: str) -> None:
    """``session`` runs on ``providers[0]``; otherwise a start-up error naming the cause."""
    wanted = providers[0]
    active = list(session.get_providers())
    if wanted in active:
        return
    missing = library_error(wanted)
    cause = missing or (gpus()[1] if wanted == CUDA_PROVIDER else None)
    printed = preload_cuda() if wanted == CUDA_PROVIDER else ""
    detail = f"; onnxruntime.preload_dlls: {printed}" if printed else ""
    raise ProviderStartError(
        f"{what}: onnxruntime created a session on {', '.join(active)} instead of {wanted} "
        f"({cause or 'no reason given'}){detail}{_hint(wanted, missing)}"
    )


def start_failure(provider: str, error: Exception, what: str) -> ProviderStartError | None:
    """When ONNX Runtime raised rather than fell back: a ProviderStartError if the provider
    cannot start here (its library does not load, or the CUDA runtime sees no GPU)."""
    missing = library_error(provider)
    cause = missing
    if cause is None and provider == CUDA_PROVIDER:
        count, cause = gpus()
        if count > 0:
            return None  # the device is there: the error is the graph's, not the machine's
    if cause is None:
        return None
    return ProviderStartError(f"{what}: {error} ({cause}){_hint(provider, missing)}")


def _hint(provider: str, missing: str | None) -> str:
    """What to do: the driver, the CUDA wheels, or the GPU itself."""
    if provider != CUDA_PROVIDER:
        return ""
    if missing is not None and "libcuda.so" in missing:
        return (
            "; libcuda.so.1 is the NVIDIA driver's, not a wheel's: install the driver on the "
            "host (a container needs --gpus all / the NVIDIA container toolkit)"
        )
    if missing is not None:
        return f"; {ORT_GPU_INSTALL}"
    return "; no usable GPU: check nvidia-smi, CUDA_VISIBLE_DEVICES and --device-id"
