"""TensorRT engine builds from the plain-opset graph.

The build parses the plain-opset float32 graph (``Variant.PLAIN``: LayerNormalization,
MatMul, Softmax, which TensorRT's parser fuses into its own attention and norm kernels) and
lets TensorRT run it in float16, with normalization computed in float32 and the summing
reductions and log/exp pinned to float32 (the same split as ``exporters.fp16``). The
profiles come from ``tei_ort.engines.trt_profiles``, which the engine uses to pick one.
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
    fp16: bool = True,
    workspace_bytes: int | None = None,
    progress: Progress = QUIET,
) -> None:
    """Parse ``onnx_path`` and write a serialized engine with ``plan``'s profiles."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if workspace_bytes is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
        pinned = keep_accurate_layers(trt, network)
        if pinned:
            config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
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


def keep_accurate_layers(trt: Any, network: Any) -> int:
    """Normalization computed in float32; summing reductions, log and exp pinned to it.

    Returns how many layers got a precision constraint (normalization layers get a compute
    precision, which needs no constraint flag). ReduceMax / ReduceMin stay float16: they
    are exact, and SPLADE's max reads a (B, T, V) tensor that float32 would double.
    """
    pinned = 0
    summing = {
        trt.ReduceOperation.SUM,
        trt.ReduceOperation.AVG,
        trt.ReduceOperation.PROD,
    }
    exponential = {trt.UnaryOperation.LOG, trt.UnaryOperation.EXP}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type == trt.LayerType.NORMALIZATION:
            layer.__class__ = trt.INormalizationLayer  # the Python API's way to downcast
            layer.compute_precision = trt.float32
        elif layer.type == trt.LayerType.REDUCE:
            layer.__class__ = trt.IReduceLayer
            if layer.op in summing:
                _pin(trt, layer)
                pinned += 1
        elif layer.type == trt.LayerType.UNARY:
            layer.__class__ = trt.IUnaryLayer
            if layer.op in exponential:
                _pin(trt, layer)
                pinned += 1
    return pinned


def _pin(trt: Any, layer: Any) -> None:
    layer.precision = trt.float32
    for out in range(layer.num_outputs):
        layer.set_output_type(out, trt.float32)


def progress_monitor(trt: Any, progress: Progress) -> Any:
    """A TensorRT ``IProgressMonitor`` that meters the builder's top-level phases.

    Nested phases (per layer, per tactic) come by the thousand and would bury the ones
    that say how far the build is; None where TensorRT has no progress monitors (< 10).
    """
    base = getattr(trt, "IProgressMonitor", None)
    if base is None:
        return None

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
