"""Looking inside exported graphs and checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto


def checkpoint_files(model_dir: Path) -> list[Path]:
    """The safetensors files a tiny model was saved as (one file, or shards in order)."""
    files = sorted(model_dir.glob("*.safetensors"))
    assert files, f"no safetensors in {model_dir}"
    return files


def count_by_precision(model: onnx.ModelProto) -> dict[str, int]:
    """Initializer element counts by dtype name: how much of the model is float16."""
    counts: dict[str, int] = {}
    for init in model.graph.initializer:
        name = TensorProto.DataType.Name(init.data_type)
        counts[name] = counts.get(name, 0) + int(np.prod(init.dims, dtype=np.int64))
    return counts
