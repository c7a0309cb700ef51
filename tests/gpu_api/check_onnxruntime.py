"""onnxruntime-gpu, installed without a GPU, against every ONNX Runtime use of our GPU code.

Run by tests/unit/test_gpu_api.py in the GPU API venv: ``python -m
tests.gpu_api.check_onnxruntime``. Three checks, printed as one JSON report:

- the build: CUDA major of ``build_and_package_info`` against ``gpu_stack.STACK``;
- the calls: every ``ort.*`` attribute and call of the CUDA engine, the session code and the
  start-up check, followed through the objects they return (IOBinding, OrtValue, RunOptions,
  SessionOptions), against the installed package (``calls.scan_files``);
- the CUDA provider options and run-config keys we pass: the option names come from our code
  (``providers.ort_options`` for CUDA, and the keys ``ort_cuda`` sets itself), each must be a
  string in the CUDA provider library, where ONNX Runtime's option parser holds its names.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import onnxruntime as ort

from tei_ort.engines.gpu_stack import STACK, check_onnxruntime_cuda
from tei_ort.engines.providers import PROVIDERS, ort_options
from tests.gpu_api.calls import scan_files

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("engines/ort_cuda.py", "engines/ort_engine.py", "engines/session_check.py")
PROVIDER_LIBRARY = "libonnxruntime_providers_cuda.so"


def keys_set_in(path: Path) -> tuple[set[str], set[str]]:
    """(provider option keys, run config keys) our engine sets by name in ``path``."""
    options: set[str] = set()
    run_config: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str)
        ):
            options.add(node.slice.value)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            first = node.args[0]
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                continue
            if node.func.attr == "setdefault":
                options.add(first.value)
            elif node.func.attr == "add_run_config_entry":
                run_config.add(first.value)
    return options, run_config


def library_strings(path: Path) -> set[str]:
    """The NUL-terminated printable strings of a shared library."""
    data = path.read_bytes()
    return {s.decode() for s in data.split(b"\0") if s and s.isascii() and s.decode().isprintable()}


def main() -> None:
    problems: list[str] = []
    info = ort.capi.build_and_package_info
    cuda_version = str(getattr(info, "cuda_version", ""))
    if cuda_version.split(".")[0] != str(STACK.cuda_major):
        problems.append(f"{info.package_name} {ort.__version__} is built for CUDA {cuda_version}")
    try:
        check_onnxruntime_cuda(ort)
    except Exception as exc:
        problems.append(f"check_onnxruntime_cuda refuses this install: {exc}")

    report = scan_files(ort, [ROOT / name for name in SOURCES], ROOT)
    problems += [str(f) for f in report.problems]

    capi = Path(ort.__file__).parent / "capi"
    provider_strings = library_strings(capi / PROVIDER_LIBRARY)
    ours = ort_options(PROVIDERS["cuda"], device_id=0, cuda_graphs=True)
    option_keys, run_keys = keys_set_in(ROOT / "engines/ort_cuda.py")
    options_checked = []
    for key in sorted(set(ours) | option_keys):
        value = ours.get(key, "")
        names = [key] + ([value] if value and not value.lstrip("-").isdigit() else [])
        for name in names:
            options_checked.append(name)
            if name not in provider_strings:
                problems.append(f"CUDA provider option {name!r} is not in {PROVIDER_LIBRARY}")
    core = library_strings(next(capi.glob("libonnxruntime.so*")))
    for key in sorted(run_keys):
        options_checked.append(key)
        if key not in provider_strings | core:
            problems.append(f"run config key {key!r} is in neither ONNX Runtime library")
    print(
        json.dumps(
            {
                "version": ort.__version__,
                "cuda_version": cuda_version,
                "checked": [str(f) for f in report.checked],
                "options_checked": options_checked,
                "problems": problems,
                "untyped": [str(f) for f in report.untyped],
            }
        )
    )


if __name__ == "__main__":
    main()
