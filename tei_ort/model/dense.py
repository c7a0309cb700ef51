"""sentence-transformers Dense modules (e.g. ``2_Dense``), applied after pooling in numpy."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tei_ort.errors import UnsupportedModelError
from tei_ort.exporters.weights import WeightStore
from tei_ort.model.info import DenseLayer

F32 = NDArray[np.float32]


def _identity(x: F32) -> F32:
    return x


def _tanh(x: F32) -> F32:
    return np.tanh(x)


def _relu(x: F32) -> F32:
    return np.maximum(x, 0.0)


def _sigmoid(x: F32) -> F32:
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32, copy=False)


_ACTIVATIONS: dict[str, Callable[[F32], F32]] = {
    "torch.nn.modules.linear.Identity": _identity,
    "torch.nn.modules.activation.Tanh": _tanh,
    "torch.nn.modules.activation.ReLU": _relu,
    "torch.nn.modules.activation.Sigmoid": _sigmoid,
}


@dataclass(frozen=True)
class DenseParams:
    weight_t: F32  # (in, out)
    bias: F32 | None  # (out,)
    activation: Callable[[F32], F32]


class DenseStack:
    """The Dense modules of a sentence-transformers model, in order."""

    def __init__(self, params: Sequence[DenseParams]) -> None:
        self.params = tuple(params)

    @classmethod
    def load(cls, layers: Sequence[DenseLayer]) -> DenseStack:
        params = []
        for layer in layers:
            activation = _ACTIVATIONS.get(layer.activation)
            if activation is None:
                raise UnsupportedModelError(
                    f"Dense activation {layer.activation!r} in {layer.path} is not supported"
                )
            store = WeightStore([layer.path / "model.safetensors"])
            weight = store.take("linear.weight", (layer.out_features, layer.in_features))
            bias = store.take("linear.bias", (layer.out_features,)) if layer.bias else None
            store.finish()
            params.append(DenseParams(np.ascontiguousarray(weight.T), bias, activation))
        return cls(params)

    @property
    def out_features(self) -> int | None:
        return int(self.params[-1].weight_t.shape[1]) if self.params else None

    def __call__(self, pooled: F32) -> F32:
        """(B, H) -> (B, out_features)."""
        x = pooled
        for p in self.params:
            x = x @ p.weight_t  # (B, out)
            if p.bias is not None:
                x = x + p.bias
            x = p.activation(x).astype(np.float32, copy=False)
        return x
