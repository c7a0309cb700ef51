"""Parity checks of exported graphs against a reference, shared by the exporter tests.

Set TEI_ORT_PARITY_LOG=<file> to append each check's figures (test id, max abs, min
cosine) to that file: the parity table of a change is read from it.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

ATOL = 1e-4
MIN_COSINE = 0.99999


def ort_session(model: onnx.ModelProto | str) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    source = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def real_tokens(out: np.ndarray, batch: dict[str, Any]) -> np.ndarray:
    """(B, T, H) -> (real tokens, H): each row's unpadded positions, rows in order."""
    lengths = batch["attention_mask"].sum(axis=1)
    return np.concatenate([out[row, : int(n)] for row, n in enumerate(lengths)])


def parity(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(max abs difference, min cosine over rows) of two arrays of the same shape."""
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    a = ours.reshape(ours.shape[0], -1).astype(np.float64)
    b = ref.reshape(ref.shape[0], -1).astype(np.float64)
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return float(np.abs(a - b).max()), float(cos.min())


def assert_close(
    ours: np.ndarray, ref: np.ndarray, atol: float = ATOL, min_cosine: float = MIN_COSINE
) -> None:
    max_abs, min_cos = parity(ours, ref)
    log = os.environ.get("TEI_ORT_PARITY_LOG")
    if log:
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"{test}\t{max_abs:.3g}\t{min_cos:.8f}\n")
    assert max_abs <= atol, f"max abs {max_abs} > {atol}"
    assert min_cos >= min_cosine, f"min cosine {min_cos} < {min_cosine}"
