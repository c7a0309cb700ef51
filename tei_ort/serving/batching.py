"""The batch budget and padding, as pure functions (no threads, no queue, no engine).

TEI's rule: the next batch takes queued entries in order while the padded size of the
batch stays within ``max_batch_tokens`` and the entry count within ``max_batch_requests``:
adding an entry of ``length`` to a batch of ``n`` entries is allowed when
``padded(max(max_len, length)) * (n + 1) <= max_batch_tokens``. tei-ort pads each batch
to a length bucket (a multiple of 16, never past the model's maximum input length) so
shapes repeat and padding stays small; the budget is checked on that padded length.

The first entry of a batch is always taken, even when it alone is over the budget (its
bucket may round past it): a batch is never empty while entries wait, so nothing hangs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from numpy.typing import NDArray

from tei_ort.engines.shapes import BUCKET_MULTIPLE, bucket_length

__all__ = ["BUCKET_MULTIPLE", "bucket_length", "fits", "pad_batch", "plan_batch"]


def fits(
    count: int,
    max_length: int,
    *,
    max_batch_tokens: int,
    max_batch_requests: int | None = None,
    multiple: int = BUCKET_MULTIPLE,
    cap: int | None = None,
) -> bool:
    """Whether a batch of ``count`` entries, the longest ``max_length`` tokens, is allowed."""
    if max_batch_requests is not None and count > max_batch_requests:
        return False
    return bucket_length(max_length, multiple=multiple, cap=cap) * count <= max_batch_tokens


def plan_batch(
    lengths: Iterable[int],
    *,
    max_batch_tokens: int,
    max_batch_requests: int | None = None,
    multiple: int = BUCKET_MULTIPLE,
    cap: int | None = None,
) -> tuple[int, int]:
    """How many entries from the front of ``lengths`` form the next batch, and its length.

    Returns ``(count, padded_length)``; ``count`` is 0 only when ``lengths`` is empty.
    ``lengths`` is consumed lazily and no further than the first entry that does not fit.
    """
    count = 0
    max_length = 0
    for length in lengths:
        longest = max(max_length, length)
        if count > 0 and not fits(
            count + 1,
            longest,
            max_batch_tokens=max_batch_tokens,
            max_batch_requests=max_batch_requests,
            multiple=multiple,
            cap=cap,
        ):
            break
        count += 1
        max_length = longest
        if max_batch_requests is not None and count >= max_batch_requests:
            break
    return count, bucket_length(max_length, multiple=multiple, cap=cap)


def pad_batch(
    rows: Sequence[NDArray[np.int64]],
    padded_length: int,
    *,
    pad_id: int = 0,
    type_rows: Sequence[NDArray[np.int64]] | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64] | None]:
    """Right-pad token rows to ``padded_length``.

    Returns ``input_ids`` (B, T), ``attention_mask`` (B, T) with 1 on real tokens and 0 on
    padding, and ``token_type_ids`` (B, T) (zeros on padding) when ``type_rows`` is given.
    """
    batch = len(rows)
    input_ids = np.full((batch, padded_length), pad_id, dtype=np.int64)  # (B, T)
    attention_mask = np.zeros((batch, padded_length), dtype=np.int64)  # (B, T)
    token_type_ids = None if type_rows is None else np.zeros((batch, padded_length), np.int64)
    for i, row in enumerate(rows):
        n = row.shape[0]
        if n > padded_length:
            raise ValueError(f"row {i} has {n} tokens, more than the padded length {padded_length}")
        input_ids[i, :n] = row
        attention_mask[i, :n] = 1
        if token_type_ids is not None and type_rows is not None:
            token_type_ids[i, :n] = type_rows[i]
    return input_ids, attention_mask, token_type_ids
