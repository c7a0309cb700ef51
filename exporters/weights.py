"""Strict access to a checkpoint's tensors.

Every tensor must be taken exactly once, with the shape the builder expects. What is
left over at the end is an error, unless the builder declared it as knowingly unused
(a pooler that an embedding model does not run, say). Names are normalised first:
the ``bert.``/``roberta.``/... prefixes that ``*For*`` checkpoints carry are stripped and
the old LayerNorm ``gamma``/``beta`` become ``weight``/``bias``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from safetensors import safe_open

from tei_ort.errors import ModelError, WeightMappingError

F32 = NDArray[np.float32]

# Buffers that transformers saves but that are not weights.
_BUFFER_SUFFIXES = ("position_ids", "rotary_emb.inv_freq", "attn.bias", "attn.masked_bias")


def safetensors_files(model_dir: Path) -> list[Path]:
    """The checkpoint files of a directory, shards in index order."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError) as exc:
            raise ModelError(f"{index}: not a valid safetensors index ({exc})") from exc
        return [model_dir / name for name in dict.fromkeys(sorted(weight_map.values()))]
    single = model_dir / "model.safetensors"
    if single.is_file():
        return [single]
    raise ModelError(
        f"{model_dir}: no model.safetensors (or sharded index) found; "
        "tei-ort reads safetensors weights only"
    )


def normalise_name(name: str, prefixes: Sequence[str]) -> str:
    for prefix in prefixes:
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    name = re.sub(r"\.gamma$", ".weight", name)
    return re.sub(r"\.beta$", ".bias", name)


class WeightStore:
    """Tensors of one checkpoint, taken one by one by an exporter."""

    def __init__(self, files: Iterable[Path], strip_prefixes: Sequence[str] = ()) -> None:
        # tensors are memory-mapped; one open handle per file for the store's lifetime
        self._files: dict[str, Any] = {}  # normalised name -> safe_open handle
        self._raw: dict[str, str] = {}  # normalised name -> name in the file
        self._used: set[str] = set()
        for path in files:
            handle: Any = safe_open(str(path), framework="np")
            for raw in handle.keys():  # noqa: SIM118 - safe_open is not a dict
                if raw.endswith(_BUFFER_SUFFIXES):
                    continue
                name = normalise_name(raw, strip_prefixes)
                if name in self._files:
                    raise WeightMappingError(f"tensor {name!r} appears twice in the checkpoint")
                self._files[name] = handle
                self._raw[name] = raw

    def __contains__(self, name: str) -> bool:
        return name in self._files

    def names(self) -> list[str]:
        return sorted(self._files)

    def shape(self, name: str) -> tuple[int, ...]:
        self._require(name)
        return tuple(self._files[name].get_slice(self._raw[name]).get_shape())

    def take(self, name: str, shape: Sequence[int]) -> F32:
        """The tensor ``name`` as float32, checked against ``shape``; marks it used."""
        self._require(name)
        if name in self._used:
            raise WeightMappingError(f"tensor {name!r} is used twice by the exporter")
        array = self._files[name].get_tensor(self._raw[name])
        if tuple(array.shape) != tuple(shape):
            raise WeightMappingError(
                f"tensor {name!r} has shape {tuple(array.shape)}, expected {tuple(shape)}"
            )
        self._used.add(name)
        return np.ascontiguousarray(array, dtype=np.float32)

    def take_optional(self, name: str, shape: Sequence[int]) -> F32 | None:
        return self.take(name, shape) if name in self._files else None

    def ignore(self, prefix: str) -> list[str]:
        """Declare every tensor under ``prefix`` knowingly unused; returns their names."""
        ignored = [n for n in self._files if n.startswith(prefix) and n not in self._used]
        self._used.update(ignored)
        return ignored

    def finish(self) -> None:
        """Fail if any tensor was neither taken nor declared unused."""
        left = sorted(set(self._files) - self._used)
        if left:
            shown = ", ".join(left[:8]) + (f" (+{len(left) - 8} more)" if len(left) > 8 else "")
            raise WeightMappingError(f"unknown or unused tensors in the checkpoint: {shown}")

    def _require(self, name: str) -> None:
        if name not in self._files:
            raise WeightMappingError(f"tensor {name!r} is missing from the checkpoint")
