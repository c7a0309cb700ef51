"""Which CPU engine runs a model, from the CPU's flags and the requested dtype (pure).

The rule (measured in bench/README.md, "bf16 and int8 on the matrix units"):

- ``--dtype float32`` always runs ONNX Runtime in float32;
- no ``--dtype``: where the CPU has AMX-BF16 and the ``openvino`` package is installed,
  OpenVINO in bf16 (~3x the float32 engine, min cosine
  >= 0.9999 to float32 on real text, tests/unit/test_bf16_accuracy.py; SPLADE's head runs
  in float32, engines/openvino_head.py); elsewhere ONNX Runtime float32, with the reason
  logged once;
- ``--dtype bfloat16`` needs both, and stops the start with the reason when one is missing
  (OpenVINO would emulate bf16 slower than float32 runs);
- ``--dtype int8`` runs ONNX Runtime's dynamically quantized int8 engine (``INT8_RULE``),
  with 7-bit weights on CPUs without a 32-bit int8 dot product (:func:`int8_pairs_saturate`).
"""

from __future__ import annotations

import enum
import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tei_ort.engines.errors import EngineUnavailableError

#: /proc/cpuinfo flags of native bf16 arithmetic: AMX tiles or the AVX-512 dot product
BF16_FLAGS = ("amx_bf16", "avx512_bf16")
#: the flag the bf16 default needs: AMX tiles. With AVX512-BF16 alone (Cooper Lake, Zen 4,
#: a Sapphire Rapids VM whose hypervisor hides AMX) OpenVINO bf16 ran at 0.56-0.65x ONNX
#: Runtime float32 (all-MiniLM-L6-v2, 2 threads, short / 128 / 512-token texts;
#: bench/README.md), so float32 stays the default there; --dtype bfloat16 still runs it
DEFAULT_BF16_FLAG = "amx_bf16"
#: flags that change the kernels OpenVINO compiles on x86 (part of the engine cache key)
ISA_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "amx_fp16",
)

#: flags of a u8 x s8 dot product that accumulates in 32 bits (VNNI, AMX)
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")

#: --dtype int8 stays on ONNX Runtime's engine: OpenVINO with NNCF static int8 measured no
#: faster than OpenVINO bf16 (same CPU time at 32 x 16 and 32 x 128) and kept a min cosine
#: of only 0.906 on MiniLM (bench/README.md), so bf16 is the fast CPU path
INT8_RULE = "--dtype int8: ONNX Runtime int8 (per-channel weights, dynamic activations)"


class CpuEngine(str, enum.Enum):
    ORT = "ort"
    OPENVINO = "openvino"


@dataclass(frozen=True)
class CpuChoice:
    engine: CpuEngine
    dtype: str  # what actually runs: "float32", "bfloat16" or "int8"
    reason: str  # one line for the start-up log


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The ``flags`` of the first processor in a /proc/cpuinfo text (empty on ARM/macOS)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def read_cpu_flags(path: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    try:
        return parse_cpu_flags(path.read_text())
    except OSError:
        return frozenset()


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def native_bf16(flags: Iterable[str]) -> bool:
    have = set(flags)
    return any(flag in have for flag in BF16_FLAGS)


def int8_pairs_saturate(flags: Iterable[str]) -> bool:
    """True where ONNX Runtime's u8 x s8 GEMM adds pairs of products in 16 bits.

    x86 without VNNI or AMX multiplies with ``vpmaddubsw``, which saturates a pair sum at
    32767: two full-range products (255 x 127 each) overflow it, and on such a CPU (AMD Zen 3,
    seen) the int8 engine lost its accuracy (DeBERTa relative error 0.35, SPLADE min cosine
    0.984). 7-bit weights keep every pair sum below 2 x 255 x 64 = 32640. Other ISAs (ARM
    NEON, no flags here) accumulate in 32 bits.
    """
    have = set(flags)
    return "avx2" in have and not any(flag in have for flag in INT8_DOT_FLAGS)


def isa_tag(flags: Iterable[str]) -> str:
    """The ISA part of an OpenVINO engine's cache key, e.g. ``avx2+avx512f+amx_bf16``."""
    have = set(flags)
    return "+".join(flag for flag in ISA_FLAGS if flag in have) or "baseline"


def choose_cpu_engine(requested: str | None, flags: Iterable[str], *, openvino: bool) -> CpuChoice:
    """The CPU engine and dtype for ``--dtype requested`` on a CPU with ``flags``."""
    bf16 = native_bf16(flags)
    if requested == "float32":
        return CpuChoice(CpuEngine.ORT, "float32", "--dtype float32: ONNX Runtime float32")
    if requested == "int8":
        if int8_pairs_saturate(flags):
            return CpuChoice(
                CpuEngine.ORT,
                "int8",
                f"{INT8_RULE}; 7-bit weights: this CPU has no VNNI or AMX, and its 16-bit "
                "pair sums would saturate on full-range weights",
            )
        return CpuChoice(CpuEngine.ORT, "int8", INT8_RULE)
    if requested == "bfloat16":
        if not bf16:
            raise EngineUnavailableError(
                "--dtype bfloat16 needs a CPU with native bf16 (AMX-BF16 or AVX512-BF16); "
                "this one has neither: use float32"
            )
        if not openvino:
            raise EngineUnavailableError(
                "--dtype bfloat16 on the CPU runs on OpenVINO: pip install openvino"
            )
        return CpuChoice(CpuEngine.OPENVINO, "bfloat16", "--dtype bfloat16: OpenVINO bf16")
    if requested is not None:
        raise EngineUnavailableError(
            f"--dtype {requested} is not available for the CPU engines; "
            "use float32, bfloat16 or int8"
        )
    if not bf16:
        return CpuChoice(
            CpuEngine.ORT,
            "float32",
            "ONNX Runtime float32: this CPU has no native bf16 (no amx_bf16 or avx512_bf16 flag)",
        )
    if DEFAULT_BF16_FLAG not in set(flags):
        return CpuChoice(
            CpuEngine.ORT,
            "float32",
            "ONNX Runtime float32: this CPU has AVX512-BF16 but no AMX, where OpenVINO bf16 "
            "runs slower than float32 (--dtype bfloat16 runs it all the same)",
        )
    if not openvino:
        return CpuChoice(
            CpuEngine.ORT,
            "float32",
            "ONNX Runtime float32: the CPU has native bf16 but the openvino package, which "
            "runs it, is not installed (pip install openvino)",
        )
    return CpuChoice(
        CpuEngine.OPENVINO,
        "bfloat16",
        "OpenVINO bf16 on the CPU's native bf16 units (--dtype float32 for ONNX Runtime float32)",
    )
