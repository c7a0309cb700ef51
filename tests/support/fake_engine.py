"""A deterministic engine without a graph, for API tests.

It computes real outputs from its inputs (not constants): a seeded token-embedding table,
a seeded position table and a masked context vector give ``last_hidden_state``; heads on
top give classifier ``logits`` and SPLADE ``sparse_embedding``. Padded positions never
change the outputs of real tokens, so the same input gives the same answer alone or in any
batch. It can be told to fail (every run, or runs whose batch holds a given token id) to
test 424 answers and /health. It asks for exact lengths (``pad_multiple`` 1) as the CPU
engines do; ``pad_multiple=16`` gives the GPU engines' bucketing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from tei_ort.engines.base import Engine, EngineInputs, OutputName

F32 = NDArray[np.float32]


class FakeEngineError(RuntimeError):
    """What a failing FakeEngine raises (an engine's own exception type, not a tei-ort one)."""


class FakeEngine(Engine):
    """``output_name`` picks the head: hidden states, classifier logits or SPLADE vectors."""

    compute_type = "cpu"
    dtype = "float32"

    def __init__(
        self,
        output_name: OutputName = OutputName.LAST_HIDDEN_STATE,
        *,
        vocab_size: int = 30522,
        hidden_size: int = 32,
        num_labels: int = 2,
        max_positions: int = 512,
        seed: int = 0,
        fail_always: bool = False,
        fail_on_token: int | None = None,
        delay_s: float = 0.0,
        max_batch_size: int | None = None,
        pad_multiple: int = 1,
    ) -> None:
        rng = np.random.default_rng(seed)
        self.pad_multiple = pad_multiple
        self.output_name = output_name
        self.max_batch_size = max_batch_size
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_labels = num_labels
        self.max_positions = max_positions
        self.fail_always = fail_always
        self.fail_on_token = fail_on_token
        self.delay_s = delay_s
        self._embeddings = rng.standard_normal((vocab_size, hidden_size)).astype(np.float32)
        self._positions = (0.1 * rng.standard_normal((max_positions, hidden_size))).astype(
            np.float32
        )
        self._types = (0.1 * rng.standard_normal((2, hidden_size))).astype(np.float32)
        self._classifier = rng.standard_normal((hidden_size, num_labels)).astype(np.float32)
        self._classifier_bias = rng.standard_normal(num_labels).astype(np.float32)
        self._splade = rng.standard_normal(hidden_size).astype(np.float32)
        self._lock = threading.Lock()
        self.calls: list[tuple[int, int]] = []  # (batch size, padded length) per run
        self.on_run: Callable[[EngineInputs], None] | None = None  # test hook

    def run(self, inputs: EngineInputs) -> F32:
        with self._lock:
            self.calls.append((inputs.batch_size, inputs.seq_len))
        if self.on_run is not None:
            self.on_run(inputs)
        if self.delay_s:
            time.sleep(self.delay_s)
        self._check(inputs)
        hidden = self._hidden(inputs)  # (B, T, H)
        if self.output_name is OutputName.LAST_HIDDEN_STATE:
            return hidden
        mask = inputs.attention_mask.astype(np.float32)  # (B, T)
        if self.output_name is OutputName.LOGITS:
            pooled = (hidden * mask[:, :, None]).sum(axis=1) / np.maximum(
                mask.sum(axis=1, keepdims=True), 1.0
            )  # (B, H)
            logits: F32 = (pooled @ self._classifier + self._classifier_bias).astype(np.float32)
            return logits  # (B, L)
        # SPLADE: max over real tokens of log(1 + relu(score)), scattered into the vocabulary
        scores = np.log1p(np.maximum(hidden @ self._splade, 0.0)) * mask  # (B, T)
        out = np.zeros((inputs.batch_size, self.vocab_size), dtype=np.float32)  # (B, V)
        rows = np.repeat(np.arange(inputs.batch_size), inputs.seq_len)
        np.maximum.at(out, (rows, inputs.input_ids.reshape(-1)), scores.reshape(-1))
        return out

    def _check(self, inputs: EngineInputs) -> None:
        if inputs.input_ids.dtype != np.int64 or inputs.attention_mask.dtype != np.int64:
            raise FakeEngineError("inputs must be int64")
        if inputs.input_ids.shape != inputs.attention_mask.shape:
            raise FakeEngineError("input_ids and attention_mask differ in shape")
        if inputs.seq_len > self.max_positions:
            raise FakeEngineError(f"sequence of {inputs.seq_len} > {self.max_positions} positions")
        if self.max_batch_size is not None and inputs.batch_size > self.max_batch_size:
            raise FakeEngineError(f"batch of {inputs.batch_size} > {self.max_batch_size}")
        if self.fail_always:
            raise FakeEngineError("the fake engine is broken")
        if self.fail_on_token is not None and bool(
            (inputs.input_ids[inputs.attention_mask == 1] == self.fail_on_token).any()
        ):
            raise FakeEngineError(f"token {self.fail_on_token} makes the fake engine fail")
        if (inputs.input_ids < 0).any() or (inputs.input_ids >= self.vocab_size).any():
            raise FakeEngineError("token id out of range")

    def _hidden(self, inputs: EngineInputs) -> F32:
        ids = inputs.input_ids  # (B, T)
        mask = inputs.attention_mask.astype(np.float32)[:, :, None]  # (B, T, 1)
        tokens = self._embeddings[ids]  # (B, T, H)
        if inputs.token_type_ids is not None:
            tokens = tokens + self._types[np.clip(inputs.token_type_ids, 0, 1)]
        context = (tokens * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1.0)  # (B, H)
        positions = self._positions[: inputs.seq_len][None, :, :]  # (1, T, H)
        hidden: F32 = np.tanh(tokens + positions + 0.5 * context[:, None, :]).astype(np.float32)
        return hidden  # (B, T, H)
