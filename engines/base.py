"""The one interface every engine implements.

The graph contract (what every exported graph takes and gives) lives here too, because
both the exporters that write graphs and the engines that run them depend on it:

inputs  ``input_ids`` (B, T) int64, ``attention_mask`` (B, T) int64 (1 = token, 0 = pad),
        ``token_type_ids`` (B, T) int64 only when the model has a token-type table.
outputs by head: ``last_hidden_state`` (B, T, H) float32 for embedding models,
        ``logits`` (B, L) float32 for sequence classifiers, ``sparse_embedding`` (B, V)
        float32 for SPLADE (max over valid tokens of log(1 + relu(mlm_logits))).
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tei_ort.engines.shapes import BUCKET_MULTIPLE


class OutputName(str, enum.Enum):
    LAST_HIDDEN_STATE = "last_hidden_state"
    LOGITS = "logits"
    SPARSE_EMBEDDING = "sparse_embedding"


@dataclass(frozen=True)
class EngineInputs:
    """One padded batch, right-padded to a common length."""

    input_ids: NDArray[np.int64]  # (B, T)
    attention_mask: NDArray[np.int64]  # (B, T)
    token_type_ids: NDArray[np.int64] | None = None  # (B, T)

    @property
    def batch_size(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.input_ids.shape[1])


class Engine(ABC):
    """Runs a built graph on one padded batch.

    ``run`` is called from one inference thread at a time; it may release the GIL.
    """

    #: the graph output this engine produces (one per graph; see the module docstring)
    output_name: OutputName
    #: what runs the graph, as ``x-compute-type`` reports it: "cpu", "cuda", "tensorrt", ...
    compute_type: str
    #: the precision the graph computes in, as /info's ``model_dtype`` reports it
    dtype: str
    #: the largest batch the engine accepts (None: no limit beyond the token budget)
    max_batch_size: int | None = None
    #: batches are padded to a multiple of this many tokens: shapes that repeat suit
    #: TensorRT profiles and CUDA graphs; 1 (exact lengths) is least compute on a CPU
    pad_multiple: int = BUCKET_MULTIPLE

    @abstractmethod
    def run(self, inputs: EngineInputs) -> NDArray[np.float32]:
        """Run one batch and return the graph's output (shape per ``output_name``)."""

    def close(self) -> None:  # noqa: B027 - optional hook, most engines hold nothing
        """Release what the engine holds (sessions, device buffers)."""


def graph_feed(inputs: EngineInputs, with_token_types: bool) -> dict[str, NDArray[np.int64]]:
    """The graph inputs of one batch by name (token types zero when the batch has none)."""
    feed = {"input_ids": inputs.input_ids, "attention_mask": inputs.attention_mask}
    if with_token_types:
        types = inputs.token_type_ids
        feed["token_type_ids"] = types if types is not None else np.zeros_like(inputs.input_ids)
    return feed
