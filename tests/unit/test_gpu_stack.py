"""The GPU stack's rules on this (GPU-less, CPU onnxruntime) machine.

Versions checked at start, the CUDA 13 cudart lookup, the device per engine thread, the
strongly typed TensorRT build, the float16 graph a TensorRT entry stores, and that no
CPU-optimized graph lands in a CUDA entry. The same calls against the real GPU packages:
tests/unit/test_gpu_api.py.
"""

from __future__ import annotations

import ctypes
import re
import sys
import threading
import types
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tei_ort.engines import _cudart, gpu_stack
from tei_ort.engines.base import EngineInputs
from tei_ort.engines.errors import ProviderStartError
from tei_ort.engines.gpu_stack import STACK, check_onnxruntime_cuda, supported_tensorrt
from tei_ort.engines.ort_engine import OrtEngine
from tei_ort.engines.providers import PROVIDERS, require
from tei_ort.engines.shapes import BatchLimits
from tei_ort.engines.trt_engine import TrtEngine
from tei_ort.engines.trt_profiles import plan_profiles
from tei_ort.errors import EngineError
from tests.support.graphs import count_by_precision

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("version", ["10.13.2.6", "10.16.1.11", "11.0.0.114", "11.4.0.106"])
def test_tensorrt_10_and_11_are_supported(version: str) -> None:
    assert supported_tensorrt(version) == version


@pytest.mark.parametrize("version", ["8.6.1", "9.3.0", "12.0.0"])
def test_other_tensorrt_majors_are_refused(version: str) -> None:
    with pytest.raises(EngineError, match=r"not supported: tei-ort runs TensorRT 10 and 11"):
        supported_tensorrt(version)


def _ort(cuda_version: str | None, package: str = "onnxruntime-gpu") -> types.ModuleType:
    info = types.SimpleNamespace(package_name=package)
    if cuda_version is not None:
        info.cuda_version = cuda_version  # type: ignore[attr-defined]
    module = types.ModuleType("onnxruntime")
    module.__version__ = "1.31.1"  # type: ignore[attr-defined]
    module.capi = types.SimpleNamespace(build_and_package_info=info)  # type: ignore[attr-defined]
    return module


def test_onnxruntime_build_is_held_to_cuda_13(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu_stack, "onnxruntime_packages", lambda: ["onnxruntime-gpu==1.31.1"])
    check_onnxruntime_cuda(_ort("13.0"))
    with pytest.raises(EngineError, match=r"built for CUDA 12\.8; tei-ort's GPU stack is CUDA 13"):
        check_onnxruntime_cuda(_ort("12.8"))
    with pytest.raises(EngineError, match=r"has no CUDA provider; pip install 'tei-ort\[gpu\]'"):
        check_onnxruntime_cuda(_ort(None, "onnxruntime"))


def test_cpu_and_gpu_onnxruntime_together_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    both = ["onnxruntime==1.32.0", "onnxruntime-gpu==1.31.1"]
    monkeypatch.setattr(gpu_stack, "onnxruntime_packages", lambda: both)
    with pytest.raises(EngineError, match=r"both onnxruntime==1\.32\.0 and onnxruntime-gpu"):
        check_onnxruntime_cuda(_ort("13.0"))
    # pip installed both and the CPU build's files won: no CUDA provider at all, same answer
    with pytest.raises(EngineError, match=r"pip install --no-deps 'onnxruntime-gpu>=1\.31\.1"):
        require(PROVIDERS["cuda"])


@pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(), reason="onnxruntime-gpu is here"
)
def test_a_cuda_engine_on_the_cpu_onnxruntime_names_onnxruntime_gpu(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match=r"install onnxruntime-gpu: pip install 'tei-ort\[gpu\]'"):
        OrtEngine(tmp_path / "model.onnx", providers=("CUDAExecutionProvider",))


def test_cudart_is_the_cuda_13_wheel_first_and_no_other_major(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for folder, name in [("cu13", "libcudart.so.13"), ("cuda_runtime", "libcudart.so.12")]:
        lib = tmp_path / "nvidia" / folder / "lib"
        lib.mkdir(parents=True)
        (lib / name).write_bytes(b"")
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: "libcudart.so.12")
    found = _cudart._candidates()
    assert found[0] == str(tmp_path / "nvidia" / "cu13" / "lib" / "libcudart.so.13")
    assert not any(".so.12" in name or ".so.11" in name for name in found)


def test_missing_cudart_names_the_cuda_13_wheel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_cudart, "library", lambda: None)
    with pytest.raises(EngineError, match=r"libcudart\.so\.13.*nvidia-cuda-runtime 13"):
        _cudart.set_device(0)


def test_the_device_is_set_on_each_thread_that_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A TensorRT engine loaded on one thread and run on another (the server's engine thread)."""
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(
        _cudart, "set_device", lambda device: calls.append((threading.get_ident(), device))
    )
    engine = TrtEngine.__new__(TrtEngine)
    engine._device = _cudart.ThreadDevice(1)
    engine._device.ensure()  # the loading thread, as __init__ does
    engine.plan = plan_profiles(BatchLimits(16, 64))
    ids = np.ones((1, 17), dtype=np.int64)  # outside every profile: run stops after the device

    after_run: list[tuple[int, int]] = []

    def run() -> None:
        with pytest.raises(EngineError, match="outside every TensorRT optimization profile"):
            engine.run(EngineInputs(ids, np.ones_like(ids), np.zeros_like(ids)))
        after_run.extend(calls)
        engine._device.ensure()  # once per thread, not per run

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    assert after_run == [(threading.get_ident(), 1), (worker.ident, 1)]
    assert calls == after_run


def _fake_tensorrt() -> Any:
    trt = mock.MagicMock(name="tensorrt")
    trt.__version__ = "11.4.0.106"
    trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED = 0  # TensorRT's value
    trt.IProgressMonitor = object
    builder = trt.Builder.return_value
    builder.build_serialized_network.return_value = b"plan"
    network = builder.create_network.return_value
    network.num_inputs = 0
    return trt


def test_tensorrt_builds_strongly_typed_without_precision_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tei_ort.exporters import tensorrt

    trt = _fake_tensorrt()
    monkeypatch.setattr(tensorrt, "import_tensorrt", lambda: trt)
    plan = plan_profiles(BatchLimits(64, 256))
    tensorrt.build_engine(tmp_path / "model.onnx", tmp_path / "model.plan", plan)
    builder = trt.Builder.return_value
    builder.create_network.assert_called_once_with(1 << 0)  # STRONGLY_TYPED
    config = builder.create_builder_config.return_value
    config.clear_flag.assert_called_once_with(trt.BuilderFlag.TF32)
    config.set_flag.assert_not_called()  # no FP16 / precision-constraint flags
    assert (tmp_path / "model.plan").read_bytes() == b"plan"


def test_a_tensorrt_entry_stores_the_float16_graph(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tei_ort.exporters import tensorrt
    from tei_ort.exporters.export import Variant
    from tei_ort.model import build
    from tei_ort.model.hub import default_model_path
    from tei_ort.model.loading import ModelOptions, prepare_engine
    from tei_ort.model.targets import EngineTarget

    target = EngineTarget(
        "trt-sm90", "float16", Variant.PLAIN, (), engine="trt", runtime="tensorrt-11.4.0"
    )
    monkeypatch.setattr(build, "select_target", lambda options: target)
    parsed: list[dict[str, int]] = []

    def build_engine(onnx_path: Path, plan_path: Path, plan: object, **_: object) -> None:
        parsed.append(count_by_precision(onnx.load(str(onnx_path))))  # what TensorRT parses
        plan_path.write_bytes(b"plan")

    monkeypatch.setattr(tensorrt, "build_engine", build_engine)
    options = ModelOptions(model_id=str(default_model_path()), engine_cache=str(tmp_path))
    prepared = prepare_engine(options)
    assert prepared.built and len(parsed) == 1
    assert parsed[0]["FLOAT16"] > 0.99 * sum(parsed[0].values())
    graph = onnx.load(str(prepared.entry_dir / "model.onnx"))
    layer_norms = [n for n in graph.graph.node if n.op_type == "LayerNormalization"]
    assert layer_norms  # the plain variant, for TensorRT's own norm kernels
    for node in layer_norms:  # float32 accumulation stated by the graph itself
        assert any(a.name == "stash_type" and a.i == 1 for a in node.attribute)


def test_a_cuda_entry_never_gets_a_cpu_optimized_graph(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """onnxruntime-gpu on a machine without a GPU: the build keeps no optimized graph."""
    from tei_ort.exporters.export import Variant
    from tei_ort.exporters.progress import Quiet
    from tei_ort.model import build
    from tei_ort.model.targets import EngineTarget

    target = EngineTarget(
        "onnx-cuda-sm90", "float16", Variant.ORT, ("CUDAExecutionProvider",), engine="ort-cuda"
    )
    optimized = tmp_path / "model.opt.onnx"

    def fell_back(model: Path, out: Path, **_: object) -> None:
        raise ProviderStartError("onnxruntime created a session on CPUExecutionProvider instead")

    monkeypatch.setattr(build, "check_providers", lambda providers: None)
    monkeypatch.setattr(build, "save_optimized", fell_back)
    messages: list[str] = []

    class Recorded(Quiet):
        def __call__(self, message: str) -> None:
            messages.append(message)

    progress = Recorded()
    build.optimize_graph(target, tmp_path / "model.onnx", optimized, progress)
    assert not optimized.exists()
    assert messages == [
        "not optimizing the graph here (onnxruntime created a session on CPUExecutionProvider "
        "instead); the server will at each start"
    ]

    def broken(model: Path, out: Path, **_: object) -> None:
        raise EngineError("onnxruntime cannot optimize model.onnx: a bad graph")

    monkeypatch.setattr(build, "save_optimized", broken)
    with pytest.raises(EngineError, match="a bad graph"):  # any other failure is the build's
        build.optimize_graph(target, tmp_path / "model.onnx", optimized, progress)


def test_readme_states_the_supported_versions() -> None:
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| Piece | Supported |") :].split("\n\n")[0]
    rows = {r.split("|")[1].strip(): r.split("|")[2].strip() for r in table.splitlines()[2:]}
    assert rows["CUDA"] == str(STACK.cuda_major)
    assert rows["cuDNN"] == str(STACK.cudnn_major)
    assert rows["ONNX Runtime"].startswith(f"onnxruntime-gpu {STACK.onnxruntime_gpu} ")
    majors = re.findall(r"\d+", rows["TensorRT"].split("(")[0])
    assert tuple(int(m) for m in majors) == STACK.tensorrt_majors
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'"onnxruntime-gpu[cuda,cudnn]>={STACK.onnxruntime_gpu}.' in pyproject
    assert f"<{STACK.tensorrt_majors[-1] + 1}" in pyproject


def test_a_raised_cuda_error_is_a_start_error_only_without_a_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tei_ort.engines import session_check

    monkeypatch.setattr(session_check, "library_error", lambda provider: None)
    error = RuntimeError("CUDA failure 100: no CUDA-capable device is detected")
    no_gpu = (0, "cudaGetDeviceCount failed with error 100: no CUDA-capable device is detected")
    monkeypatch.setattr(session_check, "gpus", lambda: no_gpu)
    found = session_check.start_failure("CUDAExecutionProvider", error, "cannot load m.onnx")
    assert isinstance(found, ProviderStartError)
    assert "no usable GPU: check nvidia-smi" in str(found)
    # with a GPU there, the same error is the graph's: left to the caller as it is
    monkeypatch.setattr(session_check, "gpus", lambda: (1, "the CUDA runtime sees 1 GPU(s)"))
    assert session_check.start_failure("CUDAExecutionProvider", error, "cannot load") is None
