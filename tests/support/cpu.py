"""What the CPU under the tests can do, said once: markers that skip with the reason, and
the ways a test runs a CPU-specific path on any x86 CPU."""

from __future__ import annotations

import pytest

from tei_ort.engines import openvino_engine
from tei_ort.engines.cpu_choice import (
    DEFAULT_BF16_FLAG,
    INT8_DOT_FLAGS,
    CpuChoice,
    CpuEngine,
    int8_pairs_saturate,
    native_bf16,
    openvino_installed,
    read_cpu_flags,
)
from tei_ort.model import targets

CPU_FLAGS = read_cpu_flags()

#: bf16 runs on OpenVINO and only where the CPU computes it natively: elsewhere the engine
#: rightly refuses `--dtype bfloat16` (OpenVINO would emulate it slower than float32)
needs_native_bf16 = pytest.mark.skipif(
    not (openvino_installed() and native_bf16(CPU_FLAGS)),
    reason="needs a CPU with native bf16 (AMX-BF16 or AVX512-BF16) and the openvino package",
)

#: the bf16 default needs AMX: with AVX512-BF16 alone float32 stays the default
#: (engines/cpu_choice.DEFAULT_BF16_FLAG)
needs_amx_bf16 = pytest.mark.skipif(
    not (openvino_installed() and DEFAULT_BF16_FLAG in CPU_FLAGS),
    reason="needs a CPU with AMX-BF16 (the bf16 default's condition) and the openvino package",
)

needs_openvino = pytest.mark.skipif(
    not openvino_installed(), reason="needs the openvino package (x86-64 wheels only)"
)

#: full-range int8 weights are exact only where u8 x s8 products add up in 32 bits
needs_int8_dot_product = pytest.mark.skipif(
    int8_pairs_saturate(CPU_FLAGS),
    reason="full-range int8 weights need VNNI or AMX (16-bit pair sums saturate without)",
)

#: the CPU's own flags, and the same CPU seen without VNNI/AMX: its int8 engine then gets
#: the 7-bit weights of AVX2-only CPUs, which are exact on every CPU, so both schemes'
#: accuracy is checked wherever the suite runs (one entry where the CPU has no VNNI)
INT8_CPUS = {"this-cpu": CPU_FLAGS} | (
    {}
    if int8_pairs_saturate(CPU_FLAGS) or "avx2" not in CPU_FLAGS
    else {"without-vnni": CPU_FLAGS - set(INT8_DOT_FLAGS)}
)


def see_cpu_flags(monkeypatch: pytest.MonkeyPatch, flags: frozenset[str]) -> None:
    """Engine targets are chosen as on a CPU with ``flags``."""
    monkeypatch.setattr(targets, "read_cpu_flags", lambda: flags)


def openvino_in_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU engines run OpenVINO in float32 with SPLADE's head apart: the bf16 engine's
    plumbing (the compiled model in the cache entry, the two-stage head) on any x86 CPU."""

    def choose(requested: str | None, flags: object, *, openvino: bool) -> CpuChoice:
        return CpuChoice(CpuEngine.OPENVINO, "float32", "tests: OpenVINO float32")

    monkeypatch.setattr(targets, "choose_cpu_engine", choose)
    monkeypatch.setattr(
        openvino_engine, "SPLIT_HEAD_DTYPES", openvino_engine.SPLIT_HEAD_DTYPES | {"float32"}
    )
