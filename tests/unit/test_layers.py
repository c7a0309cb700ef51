"""Building blocks checked one by one against numpy."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from tei_ort.exporters import layers, rotary
from tei_ort.exporters.graph import FLOAT, GraphBuilder


def _run(g: GraphBuilder, out: str, **feeds: np.ndarray) -> np.ndarray:
    g.op("Identity", out, name="y")
    g.output("y", FLOAT, [])
    model = g.build("test")
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    result: np.ndarray = session.run(None, feeds)[0]
    return result


def test_rms_norm() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 8)).astype(np.float32)
    gamma = rng.normal(size=8).astype(np.float32)
    g = GraphBuilder("rms")
    inp = g.input("x", FLOAT, [2, 5, 8])
    got = _run(g, layers.rms_norm(g, inp, gamma, 1e-6, "n"), x=x)
    expected = x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-6) * gamma
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("rotary_dim", [8, 4])
def test_rotary_matches_rotate_half(rotary_dim: int) -> None:
    rng = np.random.default_rng(1)
    b, t, n, d = 2, 6, 3, 8
    x = rng.normal(size=(b, t, n, d)).astype(np.float32)
    inv = rotary.default_inv_freq(d, 10000.0, rotary_dim)
    cos, sin = rotary.cos_sin_tables(inv, 32)
    g = GraphBuilder("rope")
    inp = g.input("x", FLOAT, [b, t, n, d])
    cos_t, sin_t = rotary.prefix_tables(g, cos, sin, inp, "rope")
    got = _run(g, rotary.apply_rotary(g, inp, cos_t, sin_t, rotary_dim, d), x=x)

    rot, rest = x[..., :rotary_dim], x[..., rotary_dim:]
    half = rotary_dim // 2
    rotated = np.concatenate([-rot[..., half:], rot[..., :half]], axis=-1)
    c, s = cos[:t, None, :], sin[:t, None, :]
    expected = np.concatenate([rot * c + rotated * s, rest], axis=-1)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    # position 0 is the identity
    np.testing.assert_allclose(got[:, 0], x[:, 0], atol=1e-7)
