"""Compact encodings of multi-vector answers (ColBERT / BGE-M3 token vectors).

A 512-token document is 512 vectors: as JSON floats that is ~10 bytes a number, so the
answer is several times the size of the numbers themselves. ``base64`` sends the
row-major little-endian bytes (4 bytes a number in float32, 2 in float16, plus base64's
4/3), with the matrix's shape and dtype beside them. The embedding-types work (issue 27)
encodes pooled vectors; this module is kept alone so that the two can share one codec.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

VectorEncoding = Literal["float", "base64"]
VectorDtype = Literal["float32", "float16"]

__all__ = ["VectorDtype", "VectorEncoding", "encode_matrix"]


def encode_matrix(matrix: NDArray[np.float32], encoding: VectorEncoding, dtype: VectorDtype) -> Any:
    """One input's (n, D) vectors as the request asked: nested float lists (rounded to
    float16 when asked), or ``{"shape": [n, D], "dtype": ..., "base64": ...}``."""
    typed = matrix.astype("<f2" if dtype == "float16" else "<f4", copy=False)
    if encoding == "float":
        # orjson writes float32 arrays as they are; float16 values go out widened
        return typed if dtype == "float32" else typed.astype(np.float32)
    return {
        "shape": list(typed.shape),
        "dtype": dtype,
        "base64": base64.b64encode(np.ascontiguousarray(typed).tobytes()).decode("ascii"),
    }
