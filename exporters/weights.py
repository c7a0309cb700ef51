"""Strict access to a checkpoint's tensors.

Every tensor must be taken exactly once, with the shape the builder expects. What is
left over at the end is an error, unless the builder declared it as knowingly unused
(a pooler that an embedding model does not run, say). Names are normalised first:
the ``bert.``/``roberta.``/... prefixes that ``*For*`` checkpoints carry are stripped and
the old LayerNorm ``gamma``/``beta`` become ``weight``/``bias``.

Files are read through a memory map of the safetensors layout (an 8-byte header length,
a JSON header, then the raw tensors): a float32 tensor is handed out as a read-only view
of the page cache, so a multi-GB checkpoint is never copied into memory as a whole.
bfloat16 (which numpy lacks) and float16 tensors are widened to float32 one at a time.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tei_ort.exporters.errors import ModelError, WeightMappingError

F32 = NDArray[np.float32]

# Buffers that transformers saves but that are not weights.
_BUFFER_SUFFIXES = ("position_ids", "rotary_emb.inv_freq", "attn.bias", "attn.masked_bias")


def normalise_name(name: str, prefixes: Sequence[str]) -> str:
    for prefix in prefixes:
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    name = re.sub(r"\.gamma$", ".weight", name)
    return re.sub(r"\.beta$", ".bias", name)


# safetensors dtype names -> numpy dtypes readable straight from the file (little-endian)
_NUMPY_DTYPES: dict[str, str] = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U8": "u1",
    "BOOL": "?",
}


class SafetensorsFile:
    """One memory-mapped safetensors file: names, shapes and float32 views of its tensors."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with open(path, "rb") as f:
                (header_len,) = struct.unpack("<Q", f.read(8))
                header: dict[str, Any] = json.loads(f.read(header_len))
        except (OSError, ValueError, struct.error) as exc:
            raise ModelError(f"{path}: not a readable safetensors file ({exc})") from exc
        header.pop("__metadata__", None)
        self._entries = header
        self._data_start = 8 + header_len
        self._map: NDArray[np.uint8] | None = None

    def names(self) -> list[str]:
        return list(self._entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(int(d) for d in self._entries[name]["shape"])

    def dtype(self, name: str) -> str:
        return str(self._entries[name]["dtype"])

    def nbytes_float32(self, name: str) -> int:
        return 4 * int(np.prod(self.shape(name), dtype=np.int64))

    def get_float32(self, name: str) -> F32:
        """The tensor as float32: a view of the file when it is stored as float32."""
        entry = self._entries[name]
        begin, end = (int(x) for x in entry["data_offsets"])
        if self._map is None:
            self._map = np.memmap(self.path, dtype=np.uint8, mode="r")
        raw = self._map[self._data_start + begin : self._data_start + end]
        shape = self.shape(name)
        dtype = str(entry["dtype"])
        if dtype == "BF16":
            # bfloat16 is the top half of a float32: shift the 16 bits into place
            widened = raw.view("<u2").astype(np.uint32) << np.uint32(16)
            return widened.view(np.float32).reshape(shape)
        if dtype not in _NUMPY_DTYPES:
            raise WeightMappingError(f"tensor {name!r} in {self.path} has dtype {dtype}")
        array = raw.view(_NUMPY_DTYPES[dtype]).reshape(shape)
        if array.dtype == np.float32:
            return np.asarray(array)  # a read-only view of the mapped file
        return array.astype(np.float32)


class WeightStore:
    """Tensors of one checkpoint, taken one by one by an exporter."""

    def __init__(self, files: Iterable[Path], strip_prefixes: Sequence[str] = ()) -> None:
        # tensors are memory-mapped; one open handle per file for the store's lifetime
        self._files: dict[str, SafetensorsFile] = {}  # normalised name -> its file
        self._raw: dict[str, str] = {}  # normalised name -> name in the file
        self._used: set[str] = set()
        for path in files:
            handle = SafetensorsFile(Path(path))
            for raw in handle.names():
                if raw.endswith(_BUFFER_SUFFIXES):
                    continue
                name = normalise_name(raw, strip_prefixes)
                if name in self._files:
                    raise WeightMappingError(f"tensor {name!r} appears twice in the checkpoint")
                self._files[name] = handle
                self._raw[name] = raw

    def __contains__(self, name: str) -> bool:
        return name in self._files

    def names(self) -> list[str]:
        return sorted(self._files)

    def shape(self, name: str) -> tuple[int, ...]:
        self._require(name)
        return self._files[name].shape(self._raw[name])

    def nbytes_float32(self) -> int:
        """What every tensor of the checkpoint takes as float32 (the exported size)."""
        return sum(handle.nbytes_float32(self._raw[n]) for n, handle in self._files.items())

    def take(self, name: str, shape: Sequence[int]) -> F32:
        """The tensor ``name`` as float32, checked against ``shape``; marks it used."""
        self._require(name)
        if name in self._used:
            raise WeightMappingError(f"tensor {name!r} is used twice by the exporter")
        handle, raw = self._files[name], self._raw[name]
        if handle.shape(raw) != tuple(shape):
            raise WeightMappingError(
                f"tensor {name!r} has shape {handle.shape(raw)}, expected {tuple(shape)}"
            )
        self._used.add(name)
        return np.ascontiguousarray(handle.get_float32(raw))

    def take_optional(self, name: str, shape: Sequence[int]) -> F32 | None:
        return self.take(name, shape) if name in self._files else None

    def ignore(self, prefix: str) -> list[str]:
        """Declare every tensor under ``prefix`` knowingly unused; returns their names."""
        ignored = [n for n in self._files if n.startswith(prefix) and n not in self._used]
        self._used.update(ignored)
        return ignored

    def finish(self) -> None:
        """Fail if any tensor was neither taken nor declared unused."""
        left = sorted(set(self._files) - self._used)
        if left:
            shown = ", ".join(left[:8]) + (f" (+{len(left) - 8} more)" if len(left) > 8 else "")
            raise WeightMappingError(f"unknown or unused tensors in the checkpoint: {shown}")

    def _require(self, name: str) -> None:
        if name not in self._files:
            raise WeightMappingError(f"tensor {name!r} is missing from the checkpoint")
