"""TensorRT engine builds: strongly typed networks from the graph's own types.

The build parses the plain-opset graph (``Variant.PLAIN``: LayerNormalization, MatMul,
Softmax, which TensorRT's parser fuses into its own attention and norm kernels) in the
precision the target stores: for float16 the graph of ``exporters.fp16``, whose types keep
float32 where it pins it (summing reductions, log/exp, position and mask chains; layer
norms accumulate in float32 by ``stash_type=1``). The network is strongly typed: TensorRT
runs each layer in the types the graph gives it, with no precision flags or per-layer
constraints. That is the only mode of TensorRT 11 (which removed ``BuilderFlag.FP16``,
``ILayer.precision`` and ``set_output_type``) and NVIDIA's recommended one since 10.12, so
one build path serves both supported majors. TF32 is off: a float32 graph runs float32.
The profiles come from ``tei_ort.engines.trt_profiles``, which the engine uses to pick one.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from tei_ort.engines.errors import EngineError
from tei_ort.engines.trt_profiles import ProfilePlan, import_tensorrt
from tei_ort.exporters.progress import QUIET, Advance, Progress


def build_engine(
    onnx_path: Path,
    plan_path: Path,
    plan: ProfilePlan,
    *,
    workspace_bytes: int | None = None,
    progress: Progress = QUIET,
) -> None:
    """Parse ``onnx_path`` and write a serialized engine with ``plan``'s profiles."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(strongly_typed_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if workspace_bytes is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    config.clear_flag(trt.BuilderFlag.TF32)
    inputs = [network.get_input(i).name for i in range(network.num_inputs)]
    for shape_range in plan.ranges:
        profile = builder.create_optimization_profile()
        for name in inputs:  # every input is (B, T)
            profile.set_shape(name, shape_range.min, shape_range.opt, shape_range.max)
        config.add_optimization_profile(profile)
    progress(f"building the TensorRT engine ({len(plan.ranges)} profiles); this takes minutes")
    monitor = progress_monitor(trt, progress)
    if monitor is not None:
        config.progress_monitor = monitor
    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if monitor is not None:
            monitor.close()
    if serialized is None:
        raise EngineError(f"TensorRT could not build an engine from {onnx_path}")
    plan_path.write_bytes(memoryview(serialized).tobytes())


def strongly_typed_flags(trt: Any) -> int:
    """``create_network`` flags: strongly typed (explicit batch is implied since 10)."""
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def progress_monitor(trt: Any, progress: Progress) -> Any:
    """A TensorRT ``IProgressMonitor`` that meters the builder's top-level phases.

    Nested phases (per layer, per tactic) come by the thousand and would bury the ones
    that say how far the build is.
    """
    base = trt.IProgressMonitor

    class Monitor(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.meters: dict[str, tuple[AbstractContextManager[Advance], Advance]] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            if parent_phase is None:
                meter = progress.meter(f"TensorRT: {phase_name}", num_steps or None, "step")
                self.meters[phase_name] = (meter, meter.__enter__())

        def step_complete(self, phase_name: str, step: int) -> bool:
            if phase_name in self.meters:
                self.meters[phase_name][1](1)
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            entry = self.meters.pop(phase_name, None)
            if entry is not None:
                entry[0].__exit__(None, None, None)

        def close(self) -> None:
            for name in list(self.meters):
                self.phase_finish(name)

    return Monitor()
