"""The batch shapes a GPU engine is given, as pure functions.

The batcher pads every batch to a sequence-length bucket (``tei_ort.serving.batching``) and keeps
``padded_length * batch <= max_batch_tokens`` (its first entry is always taken, so a batch
of one may be over the budget). TensorRT profiles, preallocated device buffers and CUDA
graphs are all sized from these functions, so they agree with the batcher by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

#: sequence lengths are padded up to a multiple of this
BUCKET_MULTIPLE = 16


def bucket_length(length: int, *, multiple: int = BUCKET_MULTIPLE, cap: int | None = None) -> int:
    """The padded length of a batch whose longest entry has ``length`` tokens.

    Rounds up to a multiple of ``multiple``; ``cap`` (the model's maximum input length)
    bounds the rounding but never cuts below ``length`` itself.
    """
    if length <= 0:
        return 0
    padded = -(-length // multiple) * multiple
    if cap is not None:
        padded = min(padded, max(cap, length))
    return padded


@dataclass(frozen=True)
class BatchLimits:
    """What bounds the shapes: the model, the token budget and the request cap."""

    max_input_length: int  # the longest input the server accepts (after truncation)
    max_batch_tokens: int
    max_batch_requests: int | None = None
    multiple: int = BUCKET_MULTIPLE

    def __post_init__(self) -> None:
        if self.max_input_length < 1 or self.max_batch_tokens < 1 or self.multiple < 1:
            raise ValueError(f"invalid batch limits {self}")

    @property
    def longest_bucket(self) -> int:
        return bucket_length(
            self.max_input_length, multiple=self.multiple, cap=self.max_input_length
        )

    def buckets(self) -> list[int]:
        """Every padded sequence length the batcher produces, ascending."""
        found = {
            bucket_length(n, multiple=self.multiple, cap=self.max_input_length)
            for n in range(self.multiple, self.max_input_length + self.multiple, self.multiple)
        }
        found.add(self.longest_bucket)
        return sorted(b for b in found if 0 < b <= self.longest_bucket)

    def bucket_of(self, seq_len: int) -> int:
        return bucket_length(seq_len, multiple=self.multiple, cap=self.max_input_length)

    def max_batch(self, seq_len: int) -> int:
        """The largest batch of padded length ``seq_len`` the batcher forms (at least 1)."""
        rows = max(1, self.max_batch_tokens // max(1, seq_len))
        if self.max_batch_requests is not None:
            rows = min(rows, self.max_batch_requests)
        return rows

    def max_tokens(self) -> int:
        """The most padded tokens in any one batch: the budget, or one over-long input."""
        return max(b * self.max_batch(b) for b in self.buckets())


def graph_batch(batch: int, limit: int) -> int:
    """The batch size a CUDA graph is captured for: the next power of two, up to ``limit``.

    Padding the batch up to a few fixed sizes keeps the number of captured graphs per
    bucket at about log2(limit) instead of one per batch size.
    """
    if batch < 1 or batch > limit:
        raise ValueError(f"batch {batch} is outside 1..{limit}")
    size = 1
    while size < batch:
        size *= 2
    return min(size, limit)
