"""pplx-embed (model_type ``bidirectional_pplx_qwen3``): a bidirectional Qwen3 whose mean-pooled
vectors are quantized as TEI's Pplx1 model does: round(127 * tanh(v)), values in [-127, 127].

The quantized vector is what TEI answers (normalised afterwards when the request asks, which
loses the integer scale: the model's authors suggest ``normalize: false``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from tei_ort.errors import UnsupportedModelError
from tei_ort.model.info import Head, ModelInfo, Pooling

F32 = NDArray[np.float32]

MODEL_TYPE = "bidirectional_pplx_qwen3"


def int8_scale(pooled: F32) -> F32:
    """(B, H) -> (B, H): round(127 * tanh(x)), as float32."""
    quantized: F32 = np.round(np.tanh(pooled) * np.float32(127.0)).astype(np.float32)
    return quantized


def pooled_transform(
    info: ModelInfo, dense: Callable[[F32], F32] | None
) -> Callable[[F32], F32] | None:
    """What runs on a pooled vector: the quantization of pplx models first, then ``dense``."""
    if info.model_type != MODEL_TYPE:
        return dense
    if info.head is not Head.BASE or info.pooling is not Pooling.MEAN:
        raise UnsupportedModelError(
            f"{MODEL_TYPE} models embed with mean pooling only (as TEI), not "
            f"{info.pooling.value if info.pooling else info.head.value}"
        )
    if dense is None:
        return int8_scale
    after = dense

    def quantize_then_dense(pooled: F32) -> F32:
        return after(int8_scale(pooled))

    return quantize_then_dense
