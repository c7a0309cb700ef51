"""The sizes every transformer config.json states, read with one error for a missing key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tei_ort.exporters.errors import UnsupportedModelError


@dataclass(frozen=True)
class Sizes:
    hidden: int
    heads: int
    layers: int
    intermediate: int
    vocab: int


def read_sizes(config: dict[str, Any]) -> Sizes:
    """hidden_size, num_attention_heads, num_hidden_layers, intermediate_size, vocab_size."""
    try:
        return Sizes(
            hidden=int(config["hidden_size"]),
            heads=int(config["num_attention_heads"]),
            layers=int(config["num_hidden_layers"]),
            intermediate=int(config["intermediate_size"]),
            vocab=int(config["vocab_size"]),
        )
    except KeyError as exc:
        raise UnsupportedModelError(f"config.json lacks {exc.args[0]!r}") from exc
