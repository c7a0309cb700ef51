"""One batch through the engine: pad the rows, run, answer each row.

The server (``infer.Infer``, whose batcher, engine and post-processing threads each call
one step) and the in-process API (``tei_ort.api``) run batches through the same
``BatchExecutor``, so padding, token types, pooling and Dense layers are decided once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from tei_ort.engines.base import Engine, EngineInputs
from tei_ort.model.info import ModelInfo
from tei_ort.model.late_heads import LateHeads
from tei_ort.model.tokenization import Encoded, Tokenizer
from tei_ort.serving.batching import bucket_length, pad_batch
from tei_ort.serving.postprocess import Answer, OutputSpec, postprocess

F32 = NDArray[np.float32]


class ServedModel(Protocol):
    """What serving needs of a loaded model (``tei_ort.model.loading.LoadedModel`` has it)."""

    @property
    def info(self) -> ModelInfo: ...

    @property
    def tokenizer(self) -> Tokenizer: ...

    @property
    def engine(self) -> Engine: ...

    @property
    def dense(self) -> Callable[[F32], F32] | None:
        """The sentence-transformers Dense layers applied after pooling, if any."""

    @property
    def late(self) -> LateHeads | None:
        """ColBERT / BGE-M3 heads applied to the token states, if any."""


class BatchExecutor:
    def __init__(self, model: ServedModel, max_input_length: int) -> None:
        self.engine = model.engine
        self.info = model.info
        self.dense = model.dense
        self.late = model.late
        self.pad_id = model.tokenizer.pad_token_id
        self.max_input_length = max_input_length
        # engines whose shapes must repeat (TensorRT profiles, CUDA graphs) pad to buckets;
        # an engine may ask for another multiple (1: exact lengths, least compute on CPU)
        self.pad_multiple = max(1, self.engine.pad_multiple)

    def inputs(self, rows: Sequence[Encoded]) -> EngineInputs:
        """The rows right-padded to the engine's multiple of their longest length."""
        longest = max(len(row) for row in rows)
        padded = bucket_length(longest, multiple=self.pad_multiple, cap=self.max_input_length)
        input_ids, attention_mask, token_type_ids = pad_batch(
            [row.input_ids for row in rows],
            padded,
            pad_id=self.pad_id,
            type_rows=[row.token_type_ids for row in rows]
            if self.info.uses_token_type_ids
            else None,
        )
        return EngineInputs(input_ids, attention_mask, token_type_ids)

    def run(self, inputs: EngineInputs) -> F32:
        return self.engine.run(inputs)

    def answers(
        self,
        output: F32,
        inputs: EngineInputs,
        lengths: Sequence[int],
        specs: Sequence[OutputSpec],
    ) -> list[Answer]:
        """Each row's answer from the engine output (see ``postprocess``)."""
        return postprocess(
            output,
            inputs.attention_mask,
            lengths,
            specs,
            output_name=self.engine.output_name,
            pooling=self.info.pooling,
            dense=self.dense,
            late=self.late,
            input_ids=inputs.input_ids,
        )
