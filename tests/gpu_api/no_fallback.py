"""A CUDA session on a machine with onnxruntime-gpu and no GPU / no cuBLAS: errors, never CPU.

Run by tests/unit/test_gpu_api.py in the GPU API venv:
``python -m tests.gpu_api.no_fallback MODEL OUT_DIR``. Tries the three places that open a
CUDA session (the plain engine, the IOBinding engine, the build's optimization) and prints
what each raised, and whether the optimization left a graph behind, as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tei_ort.engines.errors import EngineError
from tei_ort.engines.ort_cuda import OrtCudaEngine
from tei_ort.engines.ort_engine import OrtEngine, save_optimized
from tei_ort.engines.shapes import BatchLimits

CUDA = ("CUDAExecutionProvider",)


def attempt(start: object) -> str:
    try:
        start()  # type: ignore[operator]
    except EngineError as exc:
        return f"EngineError: {exc}"
    except Exception as exc:  # what the check exists to rule out
        return f"{type(exc).__name__}: {exc}"
    return "started"


def main() -> None:
    model, out = Path(sys.argv[1]), Path(sys.argv[2])
    optimized = out / "model.opt.onnx"
    limits = BatchLimits(max_input_length=16, max_batch_tokens=64)
    report = {
        "ort_engine": attempt(lambda: OrtEngine(model, providers=CUDA)),
        "ort_cuda_engine": attempt(lambda: OrtCudaEngine(model, limits=limits, device="cuda")),
        "save_optimized": attempt(lambda: save_optimized(model, optimized, providers=CUDA)),
        "optimized_left": optimized.exists(),
        "cpu_engine": attempt(lambda: OrtEngine(model)),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
