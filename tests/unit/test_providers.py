"""Provider selection: names, options, missing-package errors, compute capability checks."""

from __future__ import annotations

import importlib.util
import os
import stat
from pathlib import Path

import onnxruntime as ort
import pytest

from tei_ort.engines import _cudart, providers
from tei_ort.engines.ort_engine import OrtEngine
from tei_ort.engines.providers import (
    PROVIDERS,
    check_compute_capability,
    default_dtype,
    gpu_compute_capability,
    ort_options,
    parse_compute_capability,
    parse_provider,
    require,
    sm_tag,
)
from tei_ort.errors import ConfigurationError, EngineError, UnknownProviderError
from tei_ort.exporters.export import Variant
from tei_ort.model.options import ModelOptions
from tei_ort.model.targets import select_target


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (None, "cpu"),
        ("", "cpu"),
        ("CUDA", "cuda"),
        ("CUDAExecutionProvider", "cuda"),
        ("tensorrt", "tensorrt"),
        ("trt", "tensorrt"),
        ("cann", "cann"),
        ("coreml", "coreml"),
        ("OpenVINO", "openvino"),
    ],
)
def test_parse_provider(value: str | None, name: str) -> None:
    assert parse_provider(value).name == name


def test_unknown_provider_lists_the_choices() -> None:
    with pytest.raises(UnknownProviderError, match="cpu, cuda, tensorrt, cann, coreml, openvino"):
        parse_provider("rocm")


@pytest.mark.parametrize(
    ("name", "package"),
    [
        ("cuda", "onnxruntime-gpu"),
        ("cann", "onnxruntime-cann"),
        ("coreml", "onnxruntime \\(the macOS build\\)"),
        ("openvino", "onnxruntime-openvino"),
    ],
)
def test_missing_ort_provider_names_the_package(name: str, package: str) -> None:
    with pytest.raises(EngineError, match=f"install {package}"):
        require(PROVIDERS[name], available=["CPUExecutionProvider"])
    require(PROVIDERS[name], available=["CPUExecutionProvider", str(PROVIDERS[name].ort_name)])


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is here")
def test_missing_tensorrt_names_the_package() -> None:
    with pytest.raises(EngineError, match=r"pip install .tei-ort\[tensorrt\]."):
        require(PROVIDERS["tensorrt"])


@pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(), reason="onnxruntime-gpu is here"
)
def test_cuda_on_a_cpu_install_fails_at_start_up() -> None:
    with pytest.raises(EngineError, match="install onnxruntime-gpu"):
        select_target(ModelOptions(provider="cuda"))
    with pytest.raises(EngineError, match="install onnxruntime-openvino"):
        select_target(ModelOptions(provider="openvino"))


def test_provider_options() -> None:
    cuda = ort_options(PROVIDERS["cuda"], device_id=1, cuda_graphs=True)
    assert cuda["device_id"] == "1" and cuda["enable_cuda_graph"] == "1"
    assert ort_options(PROVIDERS["cuda"])["enable_cuda_graph"] == "0"
    assert ort_options(PROVIDERS["cann"], device_id=2)["device_id"] == "2"
    assert ort_options(PROVIDERS["cpu"]) == {}
    assert default_dtype(PROVIDERS["cuda"]) == default_dtype(PROVIDERS["tensorrt"]) == "float16"
    assert default_dtype(PROVIDERS["cpu"]) == default_dtype(PROVIDERS["openvino"]) == "float32"


@pytest.mark.parametrize(
    ("text", "capability"),
    [("8.6", (8, 6)), ("86", (8, 6)), ("sm_90", (9, 0)), ("sm75", (7, 5)), (" 12.0\n", (12, 0))],
)
def test_parse_compute_capability(text: str, capability: tuple[int, int]) -> None:
    assert parse_compute_capability(text) == capability
    assert sm_tag(capability) == f"sm{capability[0]}{capability[1]}"


def test_old_gpus_are_refused_as_tei_refuses_them() -> None:
    for ok in [(7, 5), (8, 0), (8, 6), (8, 9), (9, 0), (12, 0)]:
        check_compute_capability(ok)
    for old in [(6, 1), (7, 0), (7, 2)]:
        with pytest.raises(EngineError, match=rf"{old[0]}\.{old[1]} is not supported.*7\.5"):
            check_compute_capability(old)


def _fake_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output: str) -> None:
    script = tmp_path / "nvidia-smi"
    script.write_text(f"#!/bin/sh\necho '{output}'\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")


def test_compute_capability_from_nvidia_smi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_smi(tmp_path, monkeypatch, "8.9")
    assert gpu_compute_capability(0) == (8, 9)
    _fake_smi(tmp_path, monkeypatch, "7.0")
    with pytest.raises(EngineError, match=r"7\.0 is not supported"):
        gpu_compute_capability(0)


def test_no_gpu_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(providers.shutil, "which", lambda _: None)
    monkeypatch.setattr(_cudart, "library", lambda: None)
    with pytest.raises(EngineError, match="no NVIDIA GPU 0 found"):
        gpu_compute_capability(0)


def test_gpu_targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tei_ort.model.targets.require", lambda provider: None)  # as if installed
    _fake_smi(tmp_path, monkeypatch, "9.0")
    cuda = select_target(ModelOptions(provider="cuda"))
    assert (cuda.name, cuda.dtype, cuda.variant, cuda.engine) == (
        "onnx-cuda-sm90",
        "float16",
        Variant.ORT,
        "ort-cuda",
    )
    assert cuda.providers == ("CUDAExecutionProvider",)
    assert select_target(ModelOptions(provider="cuda", dtype="float32")).dtype == "float32"
    with pytest.raises(ConfigurationError, match="int8"):
        select_target(ModelOptions(provider="cuda", dtype="int8"))
    openvino = select_target(ModelOptions(provider="openvino"))
    assert (openvino.variant, openvino.dtype) == (Variant.PLAIN, "float32")
    with pytest.raises(ConfigurationError, match="float16 is not available for the coreml"):
        select_target(ModelOptions(provider="coreml", dtype="float16"))
    _fake_smi(tmp_path, monkeypatch, "6.1")
    with pytest.raises(EngineError, match=r"6\.1 is not supported"):
        select_target(ModelOptions(provider="cuda"))


def test_ort_engine_checks_provider_options(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="one dict per provider"):
        OrtEngine(tmp_path / "model.onnx", provider_options=[{}, {}])


def test_image_built_for_another_gpu_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _fake_smi(tmp_path, monkeypatch, "8.9")
    with caplog.at_level("WARNING", logger="tei_ort.engines.providers"):
        assert gpu_compute_capability(0, "80") == (8, 9)
    assert "built for compute capability 80 but GPU 0 has 8.9" in caplog.text
    caplog.clear()
    gpu_compute_capability(0, "89")
    assert caplog.text == ""
    # the target reads the image's architecture from the environment (Dockerfile-trt)
    monkeypatch.setenv("CUDA_COMPUTE_CAP", "80")
    monkeypatch.setattr("tei_ort.model.targets.require", lambda provider: None)
    caplog.clear()
    with caplog.at_level("WARNING", logger="tei_ort.engines.providers"):
        select_target(ModelOptions(provider="cuda"))
    assert "built for compute capability 80" in caplog.text
