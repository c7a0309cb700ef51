"""Our GPU calls against the real GPU packages, on a machine without a GPU.

The packages (onnxruntime-gpu, the CUDA 13 runtime wheel, the TensorRT 10 and 11 bindings)
are installed once into ``.venv-gpu`` (tests/support/gpu_venv.py: today's releases within
pyproject's extras, about 260 MB of downloads); the checks run there (tests/gpu_api). A
release that drops or renames anything our code calls fails here.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import onnx
import pytest
from onnx import TensorProto, helper

from tei_ort.engines.gpu_stack import STACK
from tests.support import gpu_venv


def _problems(report: dict[str, Any]) -> list[str]:
    return list(report["problems"])


@pytest.fixture(scope="module")
def venv() -> Path:
    return gpu_venv.ensure()


@pytest.mark.parametrize("major", STACK.tensorrt_majors)
def test_tensorrt_calls_exist_in_each_supported_major(venv: Path, major: int) -> None:
    report = gpu_venv.run("tests.gpu_api.check_tensorrt", str(gpu_venv.bindings(major)))
    assert str(report["version"]).startswith(f"{major}."), report["version"]
    assert report["version_error"] == ""
    assert _problems(report) == []
    assert report["untyped"] == []  # every TensorRT object our code holds was followed
    checked = "\n".join(report["checked"])
    # the scan reached the build, the engine and the progress callbacks
    for expected in (
        "trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED",
        "builder.build_serialized_network(network, config) [call]",
        "context.execute_async_v3(self._stream.handle) [call]",
        "config.progress_monitor",
        "Monitor.step_complete(phase_name, step) overrides IProgressMonitor",
    ):
        assert expected in checked


_WEAKLY_TYPED_BUILD = """
def build(onnx_path):
    trt = import_tensorrt()
    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    network = builder.create_network(0)
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)
    config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
    for i in range(network.num_layers):
        pin(trt, network.get_layer(i))
    builder.build_serialized_network(network)


def pin(trt, layer):
    layer.precision = trt.float32
    layer.set_output_type(0, trt.float32)
"""


def test_the_check_fails_what_tensorrt_11_removed(venv: Path, tmp_path: Path) -> None:
    """The TensorRT 10 weakly typed build: fine on 10, each removed name caught on 11."""
    source = tmp_path / "weakly_typed.py"
    source.write_text(textwrap.dedent(_WEAKLY_TYPED_BUILD))
    args = ("tests.gpu_api.check_tensorrt", "--source", str(source))
    ten = gpu_venv.run(args[0], str(gpu_venv.bindings(10)), *args[1:])
    eleven = gpu_venv.run(args[0], str(gpu_venv.bindings(11)), *args[1:])
    # a call no overload takes (config left out) is caught on both
    assert [p for p in _problems(ten) if "build_serialized_network" not in p] == []
    assert any("build_serialized_network" in p for p in _problems(ten))
    missing = "\n".join(_problems(eleven))
    for removed in (
        "BuilderFlag has no FP16",
        "BuilderFlag has no PREFER_PRECISION_CONSTRAINTS",
        "ILayer has no precision",
        "ILayer has no set_output_type",
    ):
        assert removed in missing


def test_onnxruntime_calls_and_cuda_options_exist(venv: Path) -> None:
    report = gpu_venv.run("tests.gpu_api.check_onnxruntime")
    assert str(report["cuda_version"]).startswith(f"{STACK.cuda_major}.")
    assert str(report["version"]).startswith(STACK.onnxruntime_gpu + ".")
    assert _problems(report) == []
    assert report["untyped"] == []
    checked = "\n".join(report["checked"])
    for expected in ("binding.bind_input(", "binding.bind_output(", "ortvalue_from_numpy("):
        assert expected in checked
    assert {"use_tf32", "enable_cuda_graph", "device_id", "gpu_graph_id"} <= set(
        report["options_checked"]
    )


def test_cudart_calls_match_the_cuda_13_headers_and_library(venv: Path) -> None:
    report = gpu_venv.run("tests.gpu_api.check_cudart")
    assert _problems(report) == []
    assert "/nvidia/cu13/lib/libcudart.so.13" in str(report["library"])
    assert {"cudaSetDevice", "cudaMemcpyAsync", "cudaStreamSynchronize"} <= set(report["calls"])
    assert report["compute_capability"] is None  # no GPU here: an answer, not a crash


def _hidden_state_graph(path: Path) -> None:
    """input_ids (B, T) -> last_hidden_state (B, T, 1): enough for a session to start."""
    nodes = [
        helper.make_node("Cast", ["input_ids"], ["ids"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["ids", "axes"], ["last_hidden_state"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["B", "T"])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["B", "T", 1])],
        initializer=[helper.make_tensor("axes", TensorProto.INT64, [1], [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(path))


def test_onnxruntime_gpu_without_a_gpu_is_a_clear_error(venv: Path, tmp_path: Path) -> None:
    """onnxruntime-gpu installed, cuBLAS not, no GPU: every CUDA start fails, naming why."""
    model = tmp_path / "model.onnx"
    _hidden_state_graph(model)
    report = gpu_venv.run("tests.gpu_api.no_fallback", str(model), str(tmp_path))
    for place in ("ort_engine", "ort_cuda_engine", "save_optimized"):
        message = str(report[place])
        assert message.startswith("EngineError: "), message
        assert "instead of CUDAExecutionProvider" in message
        # the dynamic loader's own words, as ONNX Runtime logs them
        assert "libcublasLt.so.13: cannot open shared object file" in message
        assert "pip install 'tei-ort[gpu]'" in message
    assert report["optimized_left"] is False  # no CPU-optimized graph for a CUDA entry
    assert report["cpu_engine"] == "started"  # the same install still runs on the CPU


@pytest.mark.slow
def test_every_cuda_wheel_but_no_driver_names_the_driver(tmp_path: Path) -> None:
    """The whole gpu extra (cuBLAS, cuDNN, ...) on a host without the NVIDIA driver."""
    model = tmp_path / "model.onnx"
    _hidden_state_graph(model)
    report = gpu_venv.run("tests.gpu_api.no_fallback", str(model), str(tmp_path), full=True)
    for place in ("ort_engine", "ort_cuda_engine", "save_optimized"):
        message = str(report[place])
        assert message.startswith("EngineError: "), message
        assert "libcuda.so.1: cannot open shared object file" in message
        assert "the NVIDIA driver's, not a wheel's" in message
    assert report["optimized_left"] is False
