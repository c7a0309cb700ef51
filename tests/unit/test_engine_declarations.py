"""Every engine declares what runs it (x-compute-type) and in which precision (/info)."""

from __future__ import annotations

from pathlib import Path

from tei_ort.engines.ort_cuda import OrtCudaEngine
from tei_ort.engines.ort_engine import OrtEngine, count_cores
from tei_ort.engines.providers import compute_type
from tei_ort.engines.shapes import BatchLimits
from tei_ort.engines.trt_engine import TrtEngine
from tei_ort.model.hub import default_model_path
from tei_ort.model.loading import load_model
from tei_ort.model.options import ModelOptions
from tests.support.fake_engine import FakeEngine


def test_provider_names_as_compute_types() -> None:
    assert compute_type("CPUExecutionProvider") == "cpu"
    assert compute_type("CUDAExecutionProvider") == "cuda"
    assert compute_type("TensorrtExecutionProvider") == "tensorrt"
    assert compute_type("OpenVINOExecutionProvider") == "openvino"
    assert compute_type("CANNExecutionProvider") == "cann"
    assert compute_type("SomeNewExecutionProvider") == "somenew"


def test_each_engine_declares_itself(tmp_path: Path) -> None:
    loaded = load_model(
        ModelOptions(model_id=str(default_model_path()), engine_cache=str(tmp_path))
    )
    assert isinstance(loaded.engine, OrtEngine)
    assert (loaded.engine.compute_type, loaded.engine.dtype) == ("cpu", "float32")
    assert loaded.entry_dir is not None
    graph = loaded.entry_dir / "model.onnx"
    # the IOBinding engine's code on the CPU provider (no GPU here) says so
    limits = BatchLimits(loaded.info.max_input_length, 16384)
    on_cpu = OrtCudaEngine(graph, limits=limits, device="cpu", dtype="float32")
    assert (on_cpu.compute_type, on_cpu.dtype) == ("cpu", "float32")
    assert OrtEngine(graph, dtype="int8").dtype == "int8"
    assert TrtEngine.compute_type == "tensorrt"
    assert (FakeEngine.compute_type, FakeEngine.dtype) == ("cpu", "float32")


def _topology(root: Path, cpus: dict[int, tuple[int, int]]) -> Path:
    for cpu, (package, core) in cpus.items():
        folder = root / f"cpu{cpu}" / "topology"
        folder.mkdir(parents=True)
        (folder / "physical_package_id").write_text(f"{package}\n")
        (folder / "core_id").write_text(f"{core}\n")
    return root


def test_hyper_thread_siblings_count_as_one_core(tmp_path: Path) -> None:
    # 2 vCPUs that are the two threads of one core (a common cloud shape), then two cores
    smt = _topology(tmp_path / "smt", {0: (0, 0), 1: (0, 0)})
    assert count_cores([0, 1], smt) == 1
    two = _topology(tmp_path / "two", {0: (0, 0), 1: (0, 1), 2: (1, 0), 3: (1, 0)})
    assert count_cores([0, 1, 2, 3], two) == 3  # core 0 of package 1 has two threads
    assert count_cores([0, 5], two) == 2  # no topology for cpu5: a core of its own
