"""Late chunking (Günther et al. 2024): one vector per chunk of a document, pooled from the
token states of the whole document, so that every chunk's vector has seen its context.

Pure functions on token offsets and arrays (no engine): the handlers tokenize the document
once, run it as overlapping macro-windows when it is longer than the model's window (each
window after the first drops its first ``overlap`` states, which the window before it
already gave with more left context; jina-ai's late-chunking reference does the same), then
pool each chunk's tokens by the model's own rule: the mean of its tokens (mean pooling), its
first token (CLS pooling) or its last (last-token pooling).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tei_ort.errors import ValidationError
from tei_ort.model.info import Pooling
from tei_ort.model.tokenization import Tokenizer, apply_prompt
from tei_ort.serving.pooling import l2_normalize, truncate_dimensions

F32 = NDArray[np.float32]

__all__ = [
    "ChunkPlan",
    "Chunked",
    "Chunking",
    "Document",
    "chunk_vectors",
    "late_chunk_vectors",
    "plan_chunks_by_spans",
    "plan_chunks_by_tokens",
    "plan_document",
    "plan_windows",
    "pool_chunks",
    "stitch",
]


@dataclass(frozen=True)
class ChunkPlan:
    spans: list[tuple[int, int]]  # each chunk's [start, end) characters in the input
    tokens: list[tuple[int, int]]  # each chunk's [start, end) tokens in the encoding


def plan_windows(length: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) token windows of at most ``window`` covering ``length`` tokens, each
    starting ``window - overlap`` after the one before."""
    if window <= overlap:
        raise ValueError("the macro-window must be longer than its overlap")
    windows = []
    start = 0
    while True:
        end = min(start + window, length)
        windows.append((start, end))
        if end >= length:
            return windows
        start += window - overlap


def stitch(states: Sequence[F32], windows: Sequence[tuple[int, int]], overlap: int) -> F32:
    """The token states (T, H) of a whole document from its windows' (t_w, H) states."""
    parts = [states[0]]
    for (start, _), window_states in zip(windows[1:], states[1:], strict=True):
        keep = overlap if start > 0 else 0
        parts.append(window_states[keep:])
    out: F32 = np.concatenate(parts, axis=0)
    expected = windows[-1][1]
    if out.shape[0] != expected:  # pragma: no cover - the windows tile the tokens
        raise AssertionError(f"stitched {out.shape[0]} token states for {expected} tokens")
    return out


def _content(offsets: Sequence[tuple[int, int]], special: Sequence[int]) -> list[int]:
    """Token positions that cover characters (no special token, no empty offset)."""
    return [
        i
        for i, ((start, end), is_special) in enumerate(zip(offsets, special, strict=True))
        if not is_special and end > start
    ]


def plan_chunks_by_spans(
    offsets: Sequence[tuple[int, int]],
    special: Sequence[int],
    spans: Sequence[tuple[int, int]],
    text_length: int,
    shift: int = 0,
) -> ChunkPlan:
    """Chunks given as [start, end) characters of the input (``shift``: characters of a
    prompt in front of it). A token belongs to the chunk its first character falls in."""
    content = _content(offsets, special)
    starts = np.asarray([offsets[i][0] - shift for i in content])  # (K,)
    tokens = []
    for start, end in spans:
        if not 0 <= start < end <= text_length:
            raise ValidationError(
                f"Input validation error: chunk [{start}, {end}) is not a non-empty span "
                f"of the input's {text_length} characters"
            )
        inside = np.nonzero((starts >= start) & (starts < end))[0]
        if inside.size == 0:
            raise ValidationError(
                f"Input validation error: chunk [{start}, {end}) holds no token (it starts "
                "and ends inside one token)"
            )
        # content tokens are in order: the chunk is a contiguous run of positions
        tokens.append((content[int(inside[0])], content[int(inside[-1])] + 1))
    return ChunkPlan([(int(s), int(e)) for s, e in spans], tokens)


def plan_chunks_by_tokens(
    offsets: Sequence[tuple[int, int]],
    special: Sequence[int],
    size: int,
    overlap: int,
    shift: int = 0,
) -> ChunkPlan:
    """Chunks of ``size`` content tokens, each starting ``size - overlap`` after the one
    before; their character spans come from the tokens' offsets."""
    if size < 1 or not 0 <= overlap < size:
        raise ValidationError(
            "Input validation error: chunking needs `size` >= 1 and 0 <= `overlap` < `size`"
        )
    content = _content(offsets, special)
    if not content:
        raise ValidationError("Input validation error: the input has no token to chunk")
    spans, tokens = [], []
    start = 0
    while True:
        end = min(start + size, len(content))
        first, last = content[start], content[end - 1]
        tokens.append((first, last + 1))
        spans.append((offsets[first][0] - shift, offsets[last][1] - shift))
        if end >= len(content):
            return ChunkPlan(spans, tokens)
        start += size - overlap


def pool_chunks(states: F32, ranges: Sequence[tuple[int, int]], pooling: Pooling) -> F32:
    """(C, H): each [start, end) token range of ``states`` (T, H) pooled by ``pooling``."""
    if pooling is Pooling.MEAN:
        # float64 prefix sums: a chunk's mean is a difference of two of them
        wide = states.astype(np.float64)
        sums = np.cumsum(np.concatenate([np.zeros_like(wide[:1]), wide]), axis=0)  # (T+1, H)
        starts = np.asarray([s for s, _ in ranges])
        ends = np.asarray([e for _, e in ranges])
        means = (sums[ends] - sums[starts]) / (ends - starts)[:, None]  # (C, H)
        out: F32 = means.astype(np.float32, copy=False)
        return out
    if pooling is Pooling.CLS:
        return np.ascontiguousarray(states[[s for s, _ in ranges]])
    if pooling is Pooling.LAST_TOKEN:
        return np.ascontiguousarray(states[[e - 1 for _, e in ranges]])
    raise ValidationError(
        "Input validation error: late chunking needs mean, CLS or last-token pooling, "
        f"not {pooling.value}"
    )


# -- one document, from its text to its chunk vectors -------------------------------------------


@dataclass(frozen=True)
class Chunking:
    """How a request cuts its inputs: ``spans`` (per input, [start, end) characters) or
    ``size`` / ``overlap`` in tokens; ``late`` False embeds each chunk on its own."""

    spans: list[list[tuple[int, int]]] | None = None
    size: int | None = None
    overlap: int = 0
    late: bool = True


@dataclass(frozen=True)
class Chunked:
    """One input's late-chunking answer: its chunks' character spans and vectors (C, D)."""

    spans: list[tuple[int, int]]
    vectors: F32


@dataclass(frozen=True)
class Document:
    plan: ChunkPlan
    windows: list[tuple[int, int]]  # token windows the engine runs
    window_ids: list[list[int]]  # their token ids


def macro_overlap(window: int) -> int:
    """Tokens shared by consecutive macro-windows: a quarter of the window."""
    return window // 4


def plan_document(
    tokenizer: Tokenizer,
    text: str,
    index: int,
    chunking: Chunking,
    prompt: str | None,
    window: int,
) -> Document:
    """Tokenize one input (prompt in front, as context) and plan its chunks and windows."""
    shift = len(prompt) if prompt else 0
    encoding = tokenizer.encode_offsets(apply_prompt(text, prompt))
    if chunking.spans is not None:
        plan = plan_chunks_by_spans(
            encoding.offsets, encoding.special, chunking.spans[index], len(text), shift
        )
    else:
        assert chunking.size is not None
        plan = plan_chunks_by_tokens(
            encoding.offsets, encoding.special, chunking.size, chunking.overlap, shift
        )
    ids = encoding.encoded.input_ids.tolist()
    windows = plan_windows(len(ids), window, macro_overlap(window))
    return Document(plan, windows, [ids[s:e] for s, e in windows])


def chunk_vectors(
    document: Document,
    window_states: Sequence[F32],
    pooling: Pooling,
    window: int,
) -> F32:
    """(C, H) pooled chunk vectors from the (t_w, H) states of the document's windows."""
    states = stitch(window_states, document.windows, macro_overlap(window))  # (T, H)
    return pool_chunks(states, document.plan.tokens, pooling)


def late_chunk_vectors(
    documents: Sequence[Document],
    states: Sequence[F32],
    pooling: Pooling,
    window: int,
    *,
    dense: Callable[[F32], F32] | None,
    normalize: bool,
    dimensions: int | None,
) -> list[Chunked]:
    """Every document's chunk vectors from the (t_w, H) states of all their windows, in
    order: pooled, through the model's Dense layers, cut to ``dimensions``, normalized."""
    out: list[Chunked] = []
    at = 0
    for document in documents:
        count = len(document.windows)
        vectors = chunk_vectors(document, states[at : at + count], pooling, window)  # (C, H)
        at += count
        if dense is not None:
            vectors = dense(vectors)
        vectors = truncate_dimensions(vectors, dimensions)
        if normalize:
            vectors = l2_normalize(vectors)
        out.append(Chunked(document.plan.spans, vectors))
    return out
