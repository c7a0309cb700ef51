"""The few CUDA runtime calls the TensorRT engine needs, through ctypes (no torch, no pycuda).

tei-ort's GPU stack is CUDA 13 (``gpu_stack``): ``libcudart.so.13`` comes from NVIDIA's
``nvidia-cuda-runtime`` 13 wheel (``nvidia/cu13/lib``, the layout of the CUDA 13 wheels;
the ``gpu`` extra installs it) or from a CUDA 13 image. Another major is never loaded: it
would not be the runtime ONNX Runtime's CUDA provider and TensorRT were built for. Nothing
here is loaded until a GPU engine starts.

The CUDA runtime keeps the current device per host thread: :func:`set_device` runs on the
thread that loads an engine and again on the thread that runs it
(:class:`ThreadDevice`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import sys
import threading
from functools import cache

import numpy as np
from numpy.typing import NDArray

from tei_ort.engines.errors import EngineError
from tei_ort.engines.gpu_stack import STACK

#: the CUDA runtime's enum values we pass, by their names in its headers (checked against
#: CUDA 13's driver_types.h by tests/gpu_api)
ENUMS = {
    "cudaMemcpyHostToDevice": 1,
    "cudaMemcpyDeviceToHost": 2,
    "cudaDevAttrComputeCapabilityMajor": 75,
    "cudaDevAttrComputeCapabilityMinor": 76,
}
_HOST_TO_DEVICE = ENUMS["cudaMemcpyHostToDevice"]
_DEVICE_TO_HOST = ENUMS["cudaMemcpyDeviceToHost"]
_ATTR_CC_MAJOR = ENUMS["cudaDevAttrComputeCapabilityMajor"]
_ATTR_CC_MINOR = ENUMS["cudaDevAttrComputeCapabilityMinor"]


CUDA_MAJOR = STACK.cuda_major
LIBRARY = f"libcudart.so.{CUDA_MAJOR}"


def _candidates() -> list[str]:
    """The CUDA 13 runtime: the wheel's copy first, then the loader's search path."""
    names = []
    for base in sys.path:  # nvidia-cuda-runtime 13: site-packages/nvidia/cu13/lib
        names.extend(
            sorted(glob.glob(os.path.join(base, "nvidia", f"cu{CUDA_MAJOR}", "lib", LIBRARY)))
        )
    names.append(LIBRARY)
    found = ctypes.util.find_library("cudart")
    if found and found.endswith(f".so.{CUDA_MAJOR}"):
        names.append(found)
    return names


@cache
def library() -> ctypes.CDLL | None:
    for name in _candidates():
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def _lib() -> ctypes.CDLL:
    lib = library()
    if lib is None:
        raise EngineError(
            f"the CUDA {CUDA_MAJOR} runtime ({LIBRARY}) is not found; install the "
            f"nvidia-cuda-runtime {CUDA_MAJOR} wheel (pip install 'tei-ort[gpu]') or use a "
            f"CUDA {CUDA_MAJOR} base image"
        )
    return lib


def check(status: int, what: str) -> None:
    if status != 0:
        lib = library()
        message = ""
        if lib is not None:
            lib.cudaGetErrorString.restype = ctypes.c_char_p
            message = (lib.cudaGetErrorString(status) or b"").decode()
        raise EngineError(f"CUDA {what} failed with error {status}: {message}")


def compute_capability(device_id: int = 0) -> tuple[int, int] | None:
    """(major, minor) of GPU ``device_id``; None when there is no runtime or no such GPU."""
    lib = library()
    if lib is None:
        return None
    count = ctypes.c_int(0)
    if lib.cudaGetDeviceCount(ctypes.byref(count)) != 0 or count.value <= device_id:
        return None
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    check(lib.cudaDeviceGetAttribute(ctypes.byref(major), _ATTR_CC_MAJOR, device_id), "query")
    check(lib.cudaDeviceGetAttribute(ctypes.byref(minor), _ATTR_CC_MINOR, device_id), "query")
    return major.value, minor.value


def set_device(device_id: int) -> None:
    check(_lib().cudaSetDevice(device_id), "cudaSetDevice")


class ThreadDevice:
    """Makes ``device_id`` current on each host thread that calls :meth:`ensure`, once."""

    def __init__(self, device_id: int) -> None:
        self.device_id = device_id
        self._local = threading.local()

    def ensure(self) -> None:
        if not getattr(self._local, "set", False):
            set_device(self.device_id)
            self._local.set = True


class DeviceBuffer:
    """``nbytes`` of device memory, freed with the object."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        ptr = ctypes.c_void_p()
        check(_lib().cudaMalloc(ctypes.byref(ptr), ctypes.c_size_t(max(nbytes, 1))), "cudaMalloc")
        self.ptr = int(ptr.value or 0)

    def free(self) -> None:
        if self.ptr:
            _lib().cudaFree(ctypes.c_void_p(self.ptr))
            self.ptr = 0

    def __del__(self) -> None:
        self.free()


class Stream:
    def __init__(self) -> None:
        handle = ctypes.c_void_p()
        check(_lib().cudaStreamCreate(ctypes.byref(handle)), "cudaStreamCreate")
        self.handle = int(handle.value or 0)

    def synchronize(self) -> None:
        check(_lib().cudaStreamSynchronize(ctypes.c_void_p(self.handle)), "cudaStreamSynchronize")

    def destroy(self) -> None:
        if self.handle:
            _lib().cudaStreamDestroy(ctypes.c_void_p(self.handle))
            self.handle = 0


def copy_to_device(dst: int, src: NDArray[np.generic], stream: Stream) -> None:
    src = np.ascontiguousarray(src)
    status = _lib().cudaMemcpyAsync(
        ctypes.c_void_p(dst),
        ctypes.c_void_p(src.ctypes.data),
        ctypes.c_size_t(src.nbytes),
        _HOST_TO_DEVICE,
        ctypes.c_void_p(stream.handle),
    )
    check(status, "copy to the device")


def copy_to_host(dst: NDArray[np.generic], src: int, stream: Stream) -> None:
    if not dst.flags.c_contiguous:
        raise ValueError("the host buffer must be contiguous")
    status = _lib().cudaMemcpyAsync(
        ctypes.c_void_p(dst.ctypes.data),
        ctypes.c_void_p(src),
        ctypes.c_size_t(dst.nbytes),
        _DEVICE_TO_HOST,
        ctypes.c_void_p(stream.handle),
    )
    check(status, "copy to the host")
