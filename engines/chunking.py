"""Running one big CPU batch as several small ones (pure functions, no engine).

On a CPU the activations of a batch of 16k tokens leave the caches: MiniLM runs 512 x 16
tokens at ~680 texts/s in one call and ~850 texts/s as 1024-token pieces (bench/README.md).
The server keeps TEI's token budget (``--max-batch-tokens`` 16384) for queueing; the CPU
engine cuts what it gets. Rows are sorted by real length first, so each piece is padded
only to its own longest row (the server's batches are FIFO, in arrival order). An engine
that gives a call's cost (``call_tokens``) has its batches cut where that saves more
padding than the extra call costs, within the budget: a few long texts that arrive among
short ones no longer pad them all to their length.
"""

from __future__ import annotations

import bisect
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


def plan_chunks(
    lengths: Sequence[int] | NDArray[np.int64], max_tokens: int, call_tokens: int | None = None
) -> list[Chunk]:
    """Pieces of a batch whose padded size (rows x longest) stays within ``max_tokens``.

    ``lengths`` are the real token counts of the batch's rows. Rows go longest first; a
    piece always takes at least one row, so a row longer than ``max_tokens`` runs alone.
    Every row is in exactly one piece; a row of length 0 is run with length 1.

    Without ``call_tokens`` each piece takes as many rows as the budget allows. With it,
    the pieces are the cheapest cut when a call costs ``call_tokens`` padded tokens more
    than its rows: a few long texts among short ones (a batch in arrival order) then run
    apart from them instead of padding them all, while rows of about one length stay
    together.
    """
    counts = np.maximum(np.asarray(lengths, dtype=np.int64), 1)  # (B,)
    order = np.argsort(-counts, kind="stable")  # longest first, ties in batch order
    ordered = counts[order].tolist()
    if call_tokens is None:
        ends = _filled_ends(ordered, max_tokens)
    else:
        ends = _cheapest_ends(ordered, max_tokens, call_tokens)
    chunks: list[Chunk] = []
    start = 0
    for end in ends:
        # rows after the first are no longer, so the piece's padded length is its first's
        chunks.append(Chunk(rows=order[start:end].astype(np.intp), length=ordered[start]))
        start = end
    return chunks


def _filled_ends(counts: list[int], max_tokens: int) -> list[int]:
    """Piece ends (exclusive) over rows sorted longest first, each full to the budget."""
    ends: list[int] = []
    start = 0
    while start < len(counts):
        start = min(len(counts), start + max(1, max_tokens // counts[start]))
        ends.append(start)
    return ends


def _cheapest_ends(counts: list[int], max_tokens: int, call_tokens: int) -> list[int]:
    """Piece ends minimizing sum(call_tokens + rows x longest) within the budget, over rows
    sorted longest first (dynamic programming). A piece need only end where the length
    drops or the budget is full: ending inside a run of equal lengths elsewhere only moves
    rows into a piece no shorter. The work is about rows x the drops one piece can span."""
    n = len(counts)
    drops = [k for k in range(1, n) if counts[k] < counts[k - 1]] + [n]
    best: dict[int, int] = {0: 0}  # rows [0, k) -> their cheapest cost
    cut: dict[int, int] = {}  # rows [0, k) -> where the last piece of that cut starts
    for start in range(n):
        if start not in best:  # no cheapest cut ends here
            continue
        longest = counts[start]
        last = min(n, start + max(1, max_tokens // longest))
        # the drops in (start, last], found by bisection: ``drops`` is sorted
        within = drops[bisect.bisect_right(drops, start) : bisect.bisect_right(drops, last)]
        for end in {*within, last}:
            cost = best[start] + call_tokens + (end - start) * longest
            if end not in best or cost < best[end]:
                best[end], cut[end] = cost, start
    ends: list[int] = []
    end = n
    while end > 0:
        ends.append(end)
        end = cut[end]
    return ends[::-1]


def run_chunked(
    inputs: EngineInputs,
    max_tokens: int | None,
    output_name: OutputName,
    run: Callable[[EngineInputs], NDArray[np.float32]],
    call_tokens: int | None = None,
) -> NDArray[np.float32]:
    """``run`` over the pieces of a right-padded batch of at most ``max_tokens`` padded
    tokens each (see ``plan_chunks`` for ``call_tokens``); outputs go back to their rows,
    padding positions zero. A batch that is one piece as it is (any batch, for a None
    ``max_tokens``) is one call of ``run`` on ``inputs``."""
    if max_tokens is None or inputs.batch_size == 1:
        return run(inputs)
    if call_tokens is None and inputs.batch_size * inputs.seq_len <= max_tokens:
        return run(inputs)
    lengths = inputs.attention_mask.sum(axis=1)  # (B,)
    chunks = plan_chunks(lengths, max_tokens, call_tokens)
    if len(chunks) == 1 and chunks[0].length == inputs.seq_len:
        return run(inputs)
    out: NDArray[np.float32] | None = None
    hidden = output_name is OutputName.LAST_HIDDEN_STATE
    types = inputs.token_type_ids
    for chunk in chunks:
        rows, t = chunk.rows, chunk.length
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
