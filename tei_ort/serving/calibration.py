"""The int8 / uint8 ranges of a served model, from its calibration vectors.

The calibration vectors (``tei_ort.model.calibration``: the set's texts through the
served graph, pooling and Dense layers, one text per engine run) are computed once per engine
cache entry and kept there. The ranges of a request are those of the calibration vectors
after exactly the post-processing the request asks for::

    ranges(dimensions, normalize) = per-dimension [min, max] over the set of
        normalize?(calibration[:, :dimensions])   rounded outward to 1/1024

so a Matryoshka vector truncated to 256 and normalized again is quantized over ranges
calibrated on vectors truncated to 256 and normalized again, not over a slice of the
full vector's ranges (normalizing after truncation scales each vector by its own norm,
so the slice would not fit). The same texts and graph give the same vectors, hence the
same ranges, on every rebuild.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from tei_ort.model.calibration import (
    CALIBRATION_SET,
    calibration_sha256,
    calibration_texts,
    read_calibration,
    store_calibration,
)
from tei_ort.model.info import ModelInfo, ModelKind
from tei_ort.serving.embedding_types import F32, Ranges, ranges_of
from tei_ort.serving.encoding import InputEncoder
from tei_ort.serving.executor import BatchExecutor
from tei_ort.serving.pooling import l2_normalize, truncate_dimensions
from tei_ort.serving.postprocess import Mode, OutputSpec
from tei_ort.serving.validation import is_splade

logger = logging.getLogger(__name__)

#: calibration texts per engine run: one, so that a vector is what a request of that text
#: alone gets, whatever the server's batch limits (--max-batch-tokens, TensorRT profiles)
#: and whatever padding an engine's kernels would see in a batch
CALIBRATION_BATCH = 1


def calibratable(info: ModelInfo) -> bool:
    """Whether the model gives pooled dense vectors (the ones int8 / uint8 apply to)."""
    return info.kind is ModelKind.EMBEDDING and not is_splade(info)


def calibration_vectors(executor: BatchExecutor, encoder: InputEncoder) -> F32:
    """The set's texts embedded as a request would be (truncated, no prompt), neither
    truncated in dimensions nor normalized: (N, D)."""
    texts = list(calibration_texts())
    # an encoder of its own: the served one records every length in te_request_input_length
    quiet = InputEncoder(encoder.info, encoder.tokenizer, encoder.max_input_length)
    encoded = quiet.encode(texts, True, "right", None)
    order = sorted(range(len(encoded)), key=lambda i: (len(encoded[i]), i))
    spec = OutputSpec(Mode.POOLED, normalize=False)
    rows: list[F32 | None] = [None] * len(encoded)
    for start in range(0, len(order), CALIBRATION_BATCH):
        batch = order[start : start + CALIBRATION_BATCH]
        inputs = executor.inputs([encoded[i] for i in batch])
        output = executor.run(inputs)
        lengths = [len(encoded[i]) for i in batch]
        answers = executor.answers(output, inputs, lengths, [spec] * len(batch))
        for row, answer in zip(batch, answers, strict=True):
            rows[row] = answer
    return np.stack([row for row in rows if row is not None]).astype(np.float32)  # (N, D)


class Calibration:
    """A model's calibration vectors and the ranges derived from them, per request shape."""

    def __init__(self, vectors: F32, *, stored: bool) -> None:
        self.vectors = vectors  # (N, D)
        self.stored = stored  # kept in the engine cache entry
        self._ranges: dict[tuple[int, bool], Ranges] = {}
        self._lock = threading.Lock()

    @property
    def dimensions(self) -> int:
        return int(self.vectors.shape[1])

    def ranges(self, dimensions: int | None, normalize: bool) -> Ranges:
        """The ranges for vectors cut to ``dimensions`` (None: all), then normalized or not."""
        width = self.dimensions if dimensions is None else min(dimensions, self.dimensions)
        key = (width, normalize)
        with self._lock:
            found = self._ranges.get(key)
            if found is None:
                values = truncate_dimensions(self.vectors, width)  # (N, width)
                if normalize:
                    values = l2_normalize(values)
                found = self._ranges[key] = ranges_of(values)
        return found

    def document(self) -> dict[str, Any]:
        """/info's account: the set, and the ranges of full normalized vectors."""
        ranges = self.ranges(None, True)
        return {
            "set": CALIBRATION_SET,
            "texts": int(self.vectors.shape[0]),
            "sha256": calibration_sha256(),
            "stored_in_engine_cache": self.stored,
            "dimensions": self.dimensions,
            "normalized_ranges": {"min": ranges.lo.tolist(), "max": ranges.hi.tolist()},
        }


class Calibrator:
    """Finds or computes a model's calibration once (thread-safe), on first need."""

    def __init__(
        self,
        info: ModelInfo,
        executor: BatchExecutor,
        encoder: InputEncoder,
        entry_dir: Path | None,
    ) -> None:
        self.info = info
        self.executor = executor
        self.encoder = encoder
        self.entry_dir = entry_dir
        self._calibration: Calibration | None = None
        self._lock = threading.Lock()

    @property
    def ready(self) -> Calibration | None:
        """The calibration if it has been loaded or computed already."""
        return self._calibration

    def get(self) -> Calibration:
        """Read from the engine cache entry, or run the set through the engine (and store
        it in the entry). Runs the engine: call it from a thread that may."""
        with self._lock:
            if self._calibration is None:
                self._calibration = self._load()
            return self._calibration

    def _load(self) -> Calibration:
        entry = self.entry_dir
        if entry is not None:
            vectors = read_calibration(entry, self.info)
            if vectors is not None and vectors.shape[1] == self.encoder.embedding_size:
                return Calibration(vectors, stored=True)
        vectors = calibration_vectors(self.executor, self.encoder)
        stored = entry is not None and store_calibration(entry, self.info, vectors)
        logger.info(
            "calibrated int8/uint8 ranges on %d texts%s",
            vectors.shape[0],
            f" (stored in {entry})" if stored else "",
        )
        return Calibration(vectors, stored=stored)
