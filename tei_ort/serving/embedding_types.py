"""Typed embeddings: float32 vectors as int8 / uint8 / binary / ubinary, and base64 of any.

Pure numpy, no model and no server: every front end (the HTTP routes, the in-process API,
embed-corpus) encodes through here, and so can any other output of any shape (ColBERT
token vectors: the functions work over the last axis of an array of any rank).

The mapping is a contract for stored vectors (README "Typed embeddings"):

- ``int8`` / ``uint8`` with the per-dimension ranges ``lo``, ``hi`` of a ``Ranges``::

      step   = (hi - lo) / 255            (1 where hi == lo)
      uint8  = clip(floor((x - lo) / step), 0, 255)
      int8   = uint8 - 128

  in float32, operation for operation as sentence-transformers' ``quantize_embeddings``
  with ``ranges=[lo, hi]`` (5.x), so both give the same bytes.
- ``ubinary``: bit ``x > 0`` per dimension, packed 8 per byte, most significant bit first
  (``numpy.packbits``); ``binary`` = that byte - 128 as int8 (sentence-transformers, Cohere).
  A length that is not a multiple of 8 is refused.
- ``base64`` of the typed array's raw little-endian bytes, row-major.
"""

from __future__ import annotations

import base64
import enum
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from tei_ort.errors import ValidationError

F32 = NDArray[np.float32]
#: how a vector (or a matrix of token vectors) goes on the wire: numbers, or base64 bytes
EncodingFormat = Literal["float", "base64"]
#: the precision of multi-vector answers (/embed_all)
VectorDtype = Literal["float32", "float16"]


class EmbeddingType(str, enum.Enum):
    FLOAT = "float"
    INT8 = "int8"
    UINT8 = "uint8"
    BINARY = "binary"
    UBINARY = "ubinary"

    @property
    def calibrated(self) -> bool:
        """Whether the type needs the model's calibrated ranges."""
        return self in (EmbeddingType.INT8, EmbeddingType.UINT8)

    @property
    def packed(self) -> bool:
        """Whether 8 dimensions share a byte."""
        return self in (EmbeddingType.BINARY, EmbeddingType.UBINARY)

    @property
    def dtype(self) -> np.dtype[Any]:
        """The numpy type of the encoded values."""
        if self is EmbeddingType.FLOAT:
            return np.dtype("<f4")
        if self in (EmbeddingType.INT8, EmbeddingType.BINARY):
            return np.dtype(np.int8)
        return np.dtype(np.uint8)

    def width(self, dimensions: int) -> int:
        """The length of an encoded vector of ``dimensions`` floats."""
        return dimensions // 8 if self.packed else dimensions

    def bytes_per_vector(self, dimensions: int) -> int:
        return self.width(dimensions) * self.dtype.itemsize


TYPE_NAMES = tuple(t.value for t in EmbeddingType)


def parse_type(value: object, field: str = "embedding_type") -> EmbeddingType:
    """A client's type name, or a 422 that lists the known ones."""
    if isinstance(value, str):
        try:
            return EmbeddingType(value)
        except ValueError:
            pass
    known = ", ".join(f"`{name}`" for name in TYPE_NAMES)
    raise ValidationError(f"`{field}` must be one of {known}, got {_shown(value)}")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Ranges:
    """Per-dimension [lo, hi] of the int8 / uint8 mapping: (D,) each."""

    lo: F32
    hi: F32

    def __post_init__(self) -> None:
        if self.lo.shape != self.hi.shape or self.lo.ndim != 1:
            raise ValueError(f"ranges of shapes {self.lo.shape} and {self.hi.shape}")

    @property
    def dimensions(self) -> int:
        return int(self.lo.shape[0])


#: ranges are rounded outward to multiples of this, so that a value an engine computes a
#: few ulps differently (another CPU's kernels, bf16) does not move a stored vector's grid
RANGE_GRID = 1.0 / 1024


def ranges_of(vectors: F32) -> Ranges:
    """The per-dimension range of ``vectors`` (N, D), rounded outward to ``RANGE_GRID``."""
    if vectors.ndim != 2 or vectors.shape[0] == 0:
        raise ValueError(f"ranges need (N, D) vectors with N > 0, got {vectors.shape}")
    values = vectors.astype(np.float64)  # (N, D)
    lo = np.floor(values.min(axis=0) / RANGE_GRID) * RANGE_GRID  # (D,)
    hi = np.ceil(values.max(axis=0) / RANGE_GRID) * RANGE_GRID  # (D,)
    return Ranges(lo.astype(np.float32), hi.astype(np.float32))


def check_packable(dimensions: int, kind: EmbeddingType) -> None:
    """Refuse a bit-packed type for a vector length that is not a whole number of bytes."""
    if kind.packed and dimensions % 8:
        raise ValidationError(
            f"`{kind.value}` embeddings pack 8 dimensions per byte: the vectors have "
            f"{dimensions} dimensions, which is not a multiple of 8"
        )


def quantize(values: F32, ranges: Ranges, *, unsigned: bool) -> NDArray[Any]:
    """int8 (or uint8) of ``values`` (..., D) over per-dimension ``ranges`` (D,)."""
    if values.shape[-1] != ranges.dimensions:
        raise ValueError(f"{values.shape[-1]} dimensions, ranges for {ranges.dimensions}")
    # float32 throughout, operation for operation as sentence-transformers, so that a
    # vector stored by either is the same bytes
    lo = ranges.lo.astype(np.float32)  # (D,)
    step = (ranges.hi.astype(np.float32) - lo) / np.float32(255)  # (D,)
    step = np.where(step == 0, np.float32(1), step).astype(np.float32)  # (D,)
    levels = np.floor((values.astype(np.float32, copy=False) - lo) / step)  # (..., D)
    q = np.clip(levels, 0, 255).astype(np.int16)  # (..., D)
    return q.astype(np.uint8) if unsigned else (q - 128).astype(np.int8)


def pack_bits(values: F32, *, unsigned: bool) -> NDArray[Any]:
    """Bits ``values > 0`` of (..., D) packed MSB first: (..., D / 8) uint8 or int8."""
    check_packable(values.shape[-1], EmbeddingType.UBINARY if unsigned else EmbeddingType.BINARY)
    packed = np.packbits(values > 0, axis=-1, bitorder="big")  # (..., D / 8)
    if unsigned:
        return packed
    return (packed.astype(np.int16) - 128).astype(np.int8)


def encode(values: F32, kind: EmbeddingType, ranges: Ranges | None = None) -> NDArray[Any]:
    """``values`` (..., D) as ``kind``: (..., D) or (..., D / 8) of ``kind.dtype``."""
    if kind is EmbeddingType.FLOAT:
        return values.astype(np.float32, copy=False)
    if kind.packed:
        return pack_bits(values, unsigned=kind is EmbeddingType.UBINARY)
    if ranges is None:
        raise ValueError(f"{kind.value} needs the model's calibrated ranges")
    return quantize(values, ranges, unsigned=kind is EmbeddingType.UINT8)


def to_base64(array: NDArray[Any]) -> str:
    """The raw little-endian bytes of ``array`` (row-major), base64."""
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return base64.b64encode(np.ascontiguousarray(little).tobytes()).decode("ascii")


def from_base64(text: str, kind: EmbeddingType, shape: tuple[int, ...] = (-1,)) -> NDArray[Any]:
    """The inverse of ``to_base64`` for an array of ``kind`` (clients, tests)."""
    return np.frombuffer(base64.b64decode(text), dtype=kind.dtype).reshape(shape)


def rows_base64(array: NDArray[Any]) -> list[str]:
    """One base64 string per leading row of ``array`` (N, ...)."""
    return [to_base64(row) for row in array]


def encode_matrix(matrix: F32, encoding: EncodingFormat, dtype: VectorDtype) -> Any:
    """One input's (n, D) token vectors (ColBERT / BGE-M3) as the request asked: nested
    floats (rounded to float16 when asked), or ``{"shape": [n, D], "dtype": ...,
    "base64": ...}`` (4 bytes a number in float32, 2 in float16, plus base64's 4/3,
    against ~10 a number as JSON)."""
    typed = matrix.astype("<f2" if dtype == "float16" else "<f4", copy=False)
    if encoding == "float":
        # orjson writes float32 arrays as they are; float16 values go out widened
        return typed if dtype == "float32" else typed.astype(np.float32)
    return {"shape": list(typed.shape), "dtype": dtype, "base64": to_base64(typed)}
