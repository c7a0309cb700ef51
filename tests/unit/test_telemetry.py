"""Nothing tei-ort imports reports usage anywhere: ONNX Runtime's telemetry is off."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_onnxruntime_is_imported_without_its_telemetry(tmp_path: Path) -> None:
    # a fresh interpreter with an empty home: onnxruntime's telemetry writes its device id
    # and event database under ~/.cache/Microsoft at import, unless it is switched off
    script = (
        "import tei_ort.engines.ort_engine\n"
        "import onnxruntime, os\n"
        "print(os.environ['ORT_DISABLE_TELEMETRY'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env["HOME"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["1"]
    assert not (tmp_path / ".cache" / "Microsoft").exists()
