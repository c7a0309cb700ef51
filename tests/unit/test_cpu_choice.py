"""The CPU engine rule (tei_ort.engines.cpu_choice) on fake CPU flag sets, and its use at load."""

from __future__ import annotations

import logging

import pytest

from tei_ort.engines.cpu_choice import (
    CpuEngine,
    choose_cpu_engine,
    int8_pairs_saturate,
    isa_tag,
    native_bf16,
    parse_cpu_flags,
)
from tei_ort.errors import EngineUnavailableError
from tei_ort.model import targets
from tei_ort.model.options import ModelOptions
from tei_ort.model.targets import select_target
from tests.support.cpu import needs_openvino

SAPPHIRE_RAPIDS = frozenset(
    {
        "fpu",
        "sse2",
        "avx",
        "avx2",
        "fma",
        "avx512f",
        "avx512bw",
        "avx512_vnni",
        "avx512_bf16",
        "avx512_fp16",
        "amx_bf16",
        "amx_tile",
        "amx_int8",
    }
)
COOPER_LAKE = frozenset(
    {"sse2", "avx", "avx2", "avx512f", "avx512_vnni", "avx512_bf16"}
)  # and Zen 4
ICE_LAKE = frozenset({"sse2", "avx", "avx2", "avx512f", "avx512bw", "avx512_vnni"})
HASWELL = frozenset({"sse2", "avx", "avx2", "fma"})
ARM = frozenset({"fp", "asimd", "sve", "bf16", "i8mm"})  # Graviton 3: bf16, but not an x86 flag

X86_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile
bugs\t\t: spectre_v1

processor\t: 1
flags\t\t: fpu
"""
ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes bf16 i8mm
CPU implementer\t: 0x41
"""


def test_parse_cpu_flags_takes_the_first_processor() -> None:
    assert parse_cpu_flags(X86_CPUINFO) == {
        "fpu",
        "sse2",
        "avx2",
        "avx512f",
        "avx512_bf16",
        "amx_bf16",
        "amx_tile",
    }
    assert "bf16" in parse_cpu_flags(ARM_CPUINFO)
    assert parse_cpu_flags("") == frozenset()


@pytest.mark.parametrize(
    ("flags", "bf16"),
    [(SAPPHIRE_RAPIDS, True), (COOPER_LAKE, True), (ICE_LAKE, False), (HASWELL, False)],
)
def test_native_bf16(flags: frozenset[str], bf16: bool) -> None:
    assert native_bf16(flags) is bf16


def test_default_is_openvino_bf16_where_the_cpu_has_amx() -> None:
    choice = choose_cpu_engine(None, SAPPHIRE_RAPIDS, openvino=True)
    assert (choice.engine, choice.dtype) == (CpuEngine.OPENVINO, "bfloat16")


def test_avx512_bf16_without_amx_keeps_float32_by_default_and_bf16_when_asked() -> None:
    """There OpenVINO bf16 measured slower than ONNX Runtime float32 (bench/README.md)."""
    choice = choose_cpu_engine(None, COOPER_LAKE, openvino=True)
    assert (choice.engine, choice.dtype) == (CpuEngine.ORT, "float32")
    assert "no AMX" in choice.reason
    asked = choose_cpu_engine("bfloat16", COOPER_LAKE, openvino=True)
    assert (asked.engine, asked.dtype) == (CpuEngine.OPENVINO, "bfloat16")


@pytest.mark.parametrize("flags", [ICE_LAKE, HASWELL, ARM, frozenset()])
def test_default_without_native_bf16_is_ort_float32_with_the_reason(
    flags: frozenset[str],
) -> None:
    choice = choose_cpu_engine(None, flags, openvino=True)
    assert (choice.engine, choice.dtype) == (CpuEngine.ORT, "float32")
    assert "no native bf16" in choice.reason


def test_default_without_openvino_is_ort_float32_with_the_reason() -> None:
    choice = choose_cpu_engine(None, SAPPHIRE_RAPIDS, openvino=False)
    assert (choice.engine, choice.dtype) == (CpuEngine.ORT, "float32")
    assert "openvino" in choice.reason


@pytest.mark.parametrize("flags", [SAPPHIRE_RAPIDS, HASWELL, frozenset()])
@pytest.mark.parametrize("openvino", [True, False])
def test_float32_always_forces_ort(flags: frozenset[str], openvino: bool) -> None:
    choice = choose_cpu_engine("float32", flags, openvino=openvino)
    assert (choice.engine, choice.dtype) == (CpuEngine.ORT, "float32")


def test_int8_runs_the_ort_int8_engine() -> None:
    for flags in (SAPPHIRE_RAPIDS, HASWELL):
        choice = choose_cpu_engine("int8", flags, openvino=True)
        assert (choice.engine, choice.dtype) == (CpuEngine.ORT, "int8")


@pytest.mark.parametrize(
    ("flags", "saturate"),
    [(SAPPHIRE_RAPIDS, False), (ICE_LAKE, False), (HASWELL, True), (ARM, False)],
)
def test_int8_gets_7_bit_weights_where_pair_sums_saturate(
    monkeypatch: pytest.MonkeyPatch, flags: frozenset[str], saturate: bool
) -> None:
    """AVX2 without VNNI (Haswell, AMD Zen 3) adds u8 x s8 pairs in 16 bits: the engine says
    so, gets 7-bit weights, and a cache entry of its own."""
    assert int8_pairs_saturate(flags) is saturate
    assert ("7-bit" in choose_cpu_engine("int8", flags, openvino=True).reason) is saturate
    monkeypatch.setattr(targets, "read_cpu_flags", lambda: flags)
    target = select_target(ModelOptions(dtype="int8"))
    assert target.reduce_range is saturate and target.extra.endswith("-u7") is saturate


def test_bfloat16_requested() -> None:
    choice = choose_cpu_engine("bfloat16", COOPER_LAKE, openvino=True)
    assert (choice.engine, choice.dtype) == (CpuEngine.OPENVINO, "bfloat16")
    with pytest.raises(EngineUnavailableError, match="native bf16"):
        choose_cpu_engine("bfloat16", ICE_LAKE, openvino=True)
    with pytest.raises(EngineUnavailableError, match="openvino"):
        choose_cpu_engine("bfloat16", SAPPHIRE_RAPIDS, openvino=False)


def test_float16_is_not_a_cpu_dtype() -> None:
    with pytest.raises(EngineUnavailableError, match="float16 is not available"):
        choose_cpu_engine("float16", SAPPHIRE_RAPIDS, openvino=True)


def test_isa_tag_names_only_the_flags_that_change_kernels() -> None:
    assert isa_tag(SAPPHIRE_RAPIDS) == (
        "avx2+avx512f+avx512_vnni+avx512_bf16+avx512_fp16+amx_tile+amx_bf16+amx_int8"
    )
    assert isa_tag(COOPER_LAKE) != isa_tag(SAPPHIRE_RAPIDS)
    assert isa_tag(ARM) == "baseline"


def _fake_cpu(monkeypatch: pytest.MonkeyPatch, flags: frozenset[str], openvino: bool) -> None:
    monkeypatch.setattr(targets, "read_cpu_flags", lambda: flags)
    monkeypatch.setattr(targets, "openvino_installed", lambda: openvino)


@needs_openvino
@pytest.mark.cpu_default
def test_select_target_openvino_keys_runtime_isa_and_dtype(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_cpu(monkeypatch, SAPPHIRE_RAPIDS, True)
    target = select_target(ModelOptions())
    assert (target.engine, target.dtype, target.variant.value) == ("openvino", "bfloat16", "plain")
    assert target.runtime.startswith("openvino-")
    assert target.extra == isa_tag(SAPPHIRE_RAPIDS)
    without_fp16 = SAPPHIRE_RAPIDS - {"avx512_fp16"}
    _fake_cpu(monkeypatch, without_fp16, True)
    assert select_target(ModelOptions()).extra != target.extra  # another ISA, another entry


@pytest.mark.cpu_default
def test_select_target_logs_why_it_keeps_float32(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _fake_cpu(monkeypatch, HASWELL, True)
    with caplog.at_level(logging.INFO, logger="tei_ort.model.targets"):
        target = select_target(ModelOptions())
    assert (target.engine, target.dtype) == ("ort", "float32")
    lines = [r.getMessage() for r in caplog.records if "CPU engine" in r.getMessage()]
    assert len(lines) == 1 and "no native bf16" in lines[0]
    _fake_cpu(monkeypatch, SAPPHIRE_RAPIDS, True)
    assert select_target(ModelOptions(dtype="float32")).engine == "ort"
