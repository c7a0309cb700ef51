"""The calibration set of int8 / uint8 embeddings and where its vectors are kept.

The set (``data/calibration-v1.txt``, one text per line) was written for tei-ort: short
queries, sentences and paragraphs in about thirty languages and scripts, code, numbers
and URLs, so that every dimension sees the spread real traffic gives it. It is part of
the contract of stored int8 vectors: a new set is a new version (a new file name), never
an edit of this one.

The vectors the served model gives these texts (pooled and through any Dense layers,
neither truncated nor normalized) are stored in the engine cache entry beside the graph,
as ``calibration-v1-<digest>.npy``, and recorded in the entry's manifest (size and CRC-32,
checked like every other file). ``<digest>`` covers what turns the graph's output into a
vector (pooling, Dense layers), which the cache key does not: one entry serves every
``--pooling``. An entry built before calibration existed is extended in place (the file,
then the manifest again), under the model's build lock; a read-only cache computes the
vectors at each start instead. A damaged calibration file is dropped from its entry by
the engine cache (``cache.EngineCache``), never a reason to rebuild the graph.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from importlib import resources
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from tei_ort.model.cache_guard import build_lock
from tei_ort.model.info import ModelInfo
from tei_ort.model.manifest import MANIFEST_FILE, file_crc32, read_manifest, write_manifest

logger = logging.getLogger(__name__)

F32 = NDArray[np.float32]

#: every calibration file of an entry starts so (the engine cache repairs them alone)
CALIBRATION_PREFIX = "calibration-"
CALIBRATION_SET = CALIBRATION_PREFIX + "v1"


@functools.cache
def calibration_texts() -> tuple[str, ...]:
    """The texts of ``CALIBRATION_SET``, in file order."""
    text = (
        resources.files("tei_ort.model")
        .joinpath(f"data/{CALIBRATION_SET}.txt")
        .read_text(encoding="utf-8")
    )
    return tuple(line for line in text.splitlines() if line.strip())


@functools.cache
def calibration_sha256() -> str:
    """The digest of the set's texts (reported in /info with the ranges)."""
    return hashlib.sha256("\n".join(calibration_texts()).encode()).hexdigest()


def postprocess_digest(info: ModelInfo) -> str:
    """What the vectors depend on beyond the graph: the pooling and the Dense layers."""
    parts = {
        "set": CALIBRATION_SET,
        "texts": calibration_sha256(),
        "model_type": info.model_type,
        "pooling": info.pooling.value if info.pooling is not None else None,
        "dense": [
            [
                _relative(layer.path, info.path),
                layer.in_features,
                layer.out_features,
                layer.bias,
                layer.activation,
            ]
            for layer in info.dense_layers
        ],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def calibration_file(info: ModelInfo) -> str:
    return f"{CALIBRATION_SET}-{postprocess_digest(info)}.npy"


def read_calibration(entry: Path, info: ModelInfo) -> F32 | None:
    """The stored vectors (N, D), when the entry's manifest records them undamaged."""
    name = calibration_file(info)
    records = read_manifest(entry)
    path = entry / name
    if records is None or name not in records or not path.is_file():
        return None
    if path.stat().st_size != records[name].size or file_crc32(path) != records[name].crc32:
        logger.warning("%s differs from the manifest: calibrating again", path)
        return None
    try:
        vectors = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        logger.warning("cannot read %s (%s): calibrating again", path, exc)
        return None
    if vectors.ndim != 2 or vectors.dtype != np.float32:
        return None
    return np.asarray(vectors, dtype=np.float32)


def store_calibration(entry: Path, info: ModelInfo, vectors: F32) -> bool:
    """Add the vectors to the entry and its manifest; False when the cache is read-only."""
    name = calibration_file(info)
    with build_lock(entry.parent) as refused:
        if refused is not None or not os.access(entry, os.W_OK):
            logger.info("the engine cache entry %s is read-only: calibration not stored", entry)
            return False
        if not (entry / MANIFEST_FILE).is_file():
            return False  # not a finished entry (tests, a foreign directory): leave it alone
        tmp = entry / f".{name}.{os.getpid()}.tmp"
        with tmp.open("wb") as handle:
            np.save(handle, np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)
        tmp.chmod(0o644)
        os.replace(tmp, entry / name)
        write_manifest(entry)
    return True
