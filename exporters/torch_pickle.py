"""Tensors out of a ``torch.save`` file, without torch and without running the pickle.

BGE-M3 keeps its sparse and ColBERT heads as ``torch.save(state_dict)`` files
(``sparse_linear.pt``, ``colbert_linear.pt``). Since torch 1.6 such a file is a zip archive:
``<name>/data.pkl`` (a pickle of the dict, each tensor a call to
``torch._utils._rebuild_tensor_v2`` on a persistent id ``("storage", torch.FloatStorage,
key, location, numel)``) and ``<name>/data/<key>`` (each storage's raw little-endian bytes).

A pickle can name any importable callable and call it. Here the unpickler resolves only the
few globals a state dict of tensors needs, each to a stand-in of our own that builds numpy
arrays; every other global (``os.system``, ``builtins.eval``, a torch module class...) is
refused with :class:`UnsafePickleError` before anything is called, and so is any
persistent id that is not a storage. Nothing from torch is imported or executed.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tei_ort.exporters.errors import ModelError

__all__ = ["UnsafePickleError", "load_state_dict"]


class UnsafePickleError(ModelError):
    """A torch file asks for something other than tensor data: refused, never executed."""


# torch's storage type names -> the numpy dtype of their elements (little-endian)
_STORAGE_DTYPES: dict[str, str] = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "BFloat16Storage": "<u2",  # widened to float32 below: numpy has no bfloat16
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}
_MAX_DIMS = 8


class _StorageType:
    """What ``torch.FloatStorage`` (etc.) resolves to: a name and an element dtype."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> NDArray[Any]:
    """torch._utils._rebuild_tensor_v2's arguments -> a numpy copy of the tensor."""
    if not isinstance(storage, _Storage):
        raise UnsafePickleError("a tensor is rebuilt from something that is not a storage")
    if not (
        isinstance(storage_offset, int)
        and isinstance(size, tuple)
        and isinstance(stride, tuple)
        and len(size) == len(stride) <= _MAX_DIMS
        and all(isinstance(v, int) and v >= 0 for v in (*size, *stride))
    ):
        raise UnsafePickleError("a tensor's offset, size or stride is malformed")
    array = storage.array
    extent = 1 + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) if all(size) else 0
    if storage_offset < 0 or storage_offset + extent > array.shape[0]:
        raise UnsafePickleError("a tensor reaches past the end of its storage")
    item = array.itemsize
    view = np.lib.stride_tricks.as_strided(
        array[storage_offset:],
        shape=size,
        strides=tuple(s * item for s in stride),
        writeable=False,
    )
    out = np.array(view, copy=True)
    if storage.type.name == "BFloat16Storage":  # the high half of a float32
        out = (out.astype(np.uint32) << 16).view(np.float32)
    return out


class _Storage:
    def __init__(self, storage_type: _StorageType, array: NDArray[Any]) -> None:
        self.type = storage_type
        self.array = array


def _ordered_dict(*args: Any) -> OrderedDict[Any, Any]:
    if args:  # torch never pickles OrderedDict with constructor arguments
        raise UnsafePickleError("collections.OrderedDict called with arguments")
    return OrderedDict()


# the only globals a torch.save'd dict of tensors needs
_ALLOWED: dict[tuple[str, str], Callable[..., Any] | _StorageType] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("collections", "OrderedDict"): _ordered_dict,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, read_storage: Callable[[str], bytes]) -> None:
        super().__init__(io.BytesIO(data))
        self._read_storage = read_storage
        self._storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED.get((module, name))
        if allowed is None:
            raise UnsafePickleError(
                f"the file asks for the global {module}.{name}; only tensor data is accepted "
                "(torch._utils._rebuild_tensor_v2, torch.*Storage, collections.OrderedDict)"
            )
        return allowed

    def persistent_load(self, pid: Any) -> Any:
        if not (
            isinstance(pid, tuple)
            and len(pid) == 5
            and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)
            and isinstance(pid[2], str)
            and pid[2].isdigit()
        ):
            raise UnsafePickleError(f"unexpected persistent id {pid!r:.80}")
        storage_type, key = pid[1], pid[2]
        storage = self._storages.get(key)
        if storage is None:
            raw = self._read_storage(key)
            if len(raw) % storage_type.dtype.itemsize:
                raise UnsafePickleError(f"storage {key} is not a whole number of elements")
            storage = _Storage(storage_type, np.frombuffer(raw, dtype=storage_type.dtype))
            self._storages[key] = storage
        return storage


def load_state_dict(path: Path) -> dict[str, NDArray[Any]]:
    """The tensors of a ``torch.save``'d state dict, as numpy arrays, by name.

    Raises UnsafePickleError for anything but tensor data, ModelError for a file that is
    not torch's zip format (the legacy pre-1.6 format is refused: re-save it, or convert it
    to safetensors).
    """
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ModelError(
            f"{path} is not a torch zip archive (torch >= 1.6 format) or cannot be read: {exc}"
        ) from exc
    with archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise ModelError(f"{path}: expected one <name>/data.pkl in the archive, not {pickles}")
        root = pickles[0][: -len("data.pkl")]
        byteorder = root + "byteorder"
        if byteorder in names and archive.read(byteorder).strip() != b"little":
            raise ModelError(f"{path}: big-endian torch files are not supported")

        def read_storage(key: str) -> bytes:
            name = f"{root}data/{key}"
            if name not in names:
                raise ModelError(f"{path}: storage {key} is missing from the archive")
            return archive.read(name)

        try:
            state = _Unpickler(archive.read(pickles[0]), read_storage).load()
        except UnsafePickleError:
            raise
        except ModelError:
            raise
        except Exception as exc:  # a malformed pickle: truncated, wrong opcodes...
            raise ModelError(f"{path}: cannot read the pickled state dict: {exc}") from exc
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, np.ndarray) for k, v in state.items()
    ):
        raise UnsafePickleError(f"{path} does not hold a dict of tensors")
    return dict(state)
