"""The GPU API venv: the real GPU packages, installed once beside the test venv (no GPU needed).

onnxruntime-gpu provides the same ``onnxruntime`` module as the CPU onnxruntime of the test
venv, so it lives in its own venv (``.venv-gpu``, git-ignored), with the CUDA 13 runtime
wheel (cudart and its headers) and the TensorRT bindings of each supported major in their
own folders (the same module name twice). What is installed is read from pyproject.toml's
``gpu`` and ``tensorrt`` extras and ``gpu_stack.STACK``, never pinned here: the newest
release a user would get is the one checked. cuBLAS and cuDNN (about 1 GB) are left out on
purpose: they are not needed to check names, and their absence is what the no-fallback
test shows. Re-created when the requirements change; ``TEI_ORT_GPU_VENV`` moves it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tei_ort.engines.gpu_stack import STACK

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as a package
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("TEI_ORT_GPU_VENV", ROOT / ".venv-gpu"))
PYTHON = VENV / "bin" / "python"
STAMP = VENV / "tei-ort-gpu-api.json"


def _extra(name: str) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return list(project["optional-dependencies"][name])


def requirements() -> dict[str, list[str]]:
    """What goes where: "venv" (pip install) and one "trt-<major>" folder per major."""
    gpu = _extra("gpu")
    ort = next(r for r in gpu if r.startswith("onnxruntime-gpu"))
    runtime = next(r for r in gpu if r.startswith("nvidia-cuda-runtime"))
    tensorrt = next(r for r in _extra("tensorrt") if r.startswith("tensorrt-cu"))
    package = re.match(r"[\w-]+", tensorrt)
    assert package is not None
    lowest = re.search(r">=\s*([\d.]+)", tensorrt)  # e.g. 10.13: the first -cu13 release
    found = {"venv": [re.sub(r"\[[^\]]*\]", "", ort), runtime]}
    for major in STACK.tensorrt_majors:
        floor = lowest.group(1) if lowest and int(lowest.group(1).split(".")[0]) == major else major
        found[f"trt-{major}"] = [f"{package.group(0)}-bindings>={floor},<{major + 1}"]
    return found


#: the whole gpu extra as users get it (cuBLAS, cuDNN, ...: about 1.2 GB of downloads, 2.5 GB
#: installed): only the opt-in (slow) test that starts on it with every library but the driver
FULL_VENV = VENV.with_name(VENV.name + "-full")


def full_requirements() -> dict[str, list[str]]:
    return {"venv": _extra("gpu")}


def bindings(major: int) -> Path:
    return VENV / f"trt-{major}"


def ensure(full: bool = False) -> Path:
    """The venv's python, installed (once) with today's releases of the requirements."""
    venv = FULL_VENV if full else VENV
    wanted = full_requirements() if full else requirements()
    python, stamp = venv / "bin" / "python", venv / STAMP.name
    if python.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, *wanted["venv"]], check=True)
    for folder, reqs in wanted.items():
        if folder != "venv":
            subprocess.run([*pip, "--no-deps", "--target", str(venv / folder), *reqs], check=True)
    stamp.write_text(json.dumps(wanted))
    return python


def run(*args: str, full: bool = False) -> dict[str, object]:
    """``python -m <args>`` in the venv, from the repository root; its JSON report."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [str(ensure(full)), "-m", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    report: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return report
