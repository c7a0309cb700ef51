"""The few CUDA runtime calls the TensorRT engine needs, through ctypes (no torch, no pycuda).

``libcudart`` comes with the NVIDIA driver images and with the ``nvidia-cuda-runtime-cu12``
wheel that ``tensorrt-cu12`` installs; nothing here is loaded until a GPU engine starts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import sys
from functools import cache

import numpy as np
from numpy.typing import NDArray

from tei_ort.engines.errors import EngineError

_HOST_TO_DEVICE = 1  # cudaMemcpyHostToDevice
_DEVICE_TO_HOST = 2  # cudaMemcpyDeviceToHost
_ATTR_CC_MAJOR = 75  # cudaDevAttrComputeCapabilityMajor
_ATTR_CC_MINOR = 76  # cudaDevAttrComputeCapabilityMinor


def _candidates() -> list[str]:
    names = []
    found = ctypes.util.find_library("cudart")
    if found:
        names.append(found)
    for base in sys.path:  # the nvidia-cuda-runtime wheel's copy
        names.extend(
            sorted(glob.glob(os.path.join(base, "nvidia", "cuda_runtime", "lib", "libcudart.so*")))
        )
    names.extend(["libcudart.so.12", "libcudart.so.13", "libcudart.so.11.0", "libcudart.so"])
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
            "the CUDA runtime (libcudart) is not found; install nvidia-cuda-runtime-cu12 "
            "or use an NVIDIA CUDA base image"
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
