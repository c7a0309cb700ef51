"""Running one big CPU batch as several small ones (pure functions, no engine).

On a CPU the activations of a batch of 16k tokens leave the caches: MiniLM runs 512 x 16
tokens at ~680 texts/s in one call and ~850 texts/s as 1024-token pieces (bench/README.md).
The server keeps TEI's token budget (``--max-batch-tokens`` 16384) for queueing; the CPU
engine cuts what it gets. Rows are sorted by real length first, so each piece is padded
only to its own longest row (the server's batches are FIFO, in arrival order).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tei_ort.engines.base import EngineInputs, OutputName

#: tokens per piece on the CPU provider (measured best of 256 .. 8192, bench/README.md)
CPU_CHUNK_TOKENS = 1024


@dataclass(frozen=True)
class Chunk:
    rows: NDArray[np.intp]  # (b,) rows of the batch, longest first
    length: int  # the longest real length among them: the piece's padded length


def plan_chunks(lengths: Sequence[int] | NDArray[np.int64], max_tokens: int) -> list[Chunk]:
    """Pieces of a batch whose padded size (rows x longest) stays within ``max_tokens``.

    ``lengths`` are the real token counts of the batch's rows. Rows go longest first; a
    piece always takes at least one row, so a row longer than ``max_tokens`` runs alone.
    Every row is in exactly one piece; a row of length 0 is run with length 1.
    """
    counts = np.maximum(np.asarray(lengths, dtype=np.int64), 1)  # (B,)
    order = np.argsort(-counts, kind="stable")  # longest first, ties in batch order
    chunks: list[Chunk] = []
    start = 0
    while start < len(order):
        longest = int(counts[order[start]])
        # rows after the first are no longer, so the piece's padded length is ``longest``
        take = max(1, max_tokens // longest)
        rows = order[start : start + take]
        chunks.append(Chunk(rows=rows.astype(np.intp), length=longest))
        start += take
    return chunks


def run_chunked(
    inputs: EngineInputs,
    max_tokens: int | None,
    output_name: OutputName,
    run: Callable[[EngineInputs], NDArray[np.float32]],
) -> NDArray[np.float32]:
    """``run`` over the pieces of a right-padded batch of at most ``max_tokens`` padded
    tokens each; outputs go back to their rows, padding positions zero. A batch within
    ``max_tokens`` (or any batch, for None) is one call of ``run`` as it is."""
    if max_tokens is None or inputs.batch_size * inputs.seq_len <= max_tokens:
        return run(inputs)
    lengths = inputs.attention_mask.sum(axis=1)  # (B,)
    out: NDArray[np.float32] | None = None
    hidden = output_name is OutputName.LAST_HIDDEN_STATE
    for chunk in plan_chunks(lengths, max_tokens):
        rows, t = chunk.rows, chunk.length
        types = inputs.token_type_ids
        part = run(
            EngineInputs(
                inputs.input_ids[rows, :t],
                inputs.attention_mask[rows, :t],
                None if types is None else types[rows, :t],
            )
        )
        if out is None:
            shape = (inputs.batch_size, *part.shape[1:])
            if hidden:
                shape = (inputs.batch_size, inputs.seq_len, *part.shape[2:])  # (B, T, H)
            out = np.zeros(shape, dtype=part.dtype)
        if hidden:
            out[rows, :t] = part  # (b, t, H) into (B, T, H)
        else:
            out[rows] = part  # (b, L) or (b, V)
    assert out is not None  # a batch has at least one row
    return out
