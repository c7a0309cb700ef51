"""The wheel: one import root (tei_ort), the proto and the lower layers inside it."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_installs_everything_under_tei_ort(tmp_path: Path) -> None:
    # a copy of the sources, so no build/ directory of an earlier build leaks into the wheel
    source = tmp_path / "source"
    skip = shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__", "tests")
    shutil.copytree(ROOT, source, symlinks=True, ignore=skip)
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run(
        [*pip, "-w", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("tei_ort-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    roots = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert roots == {"tei_ort"}  # no top-level `engines` / `exporters` to collide with
    for shipped in (
        "tei_ort/proto/tei.proto",
        "tei_ort/proto/tei_pb2.pyi",
        "tei_ort/engines/base.py",
        "tei_ort/exporters/export.py",
        "tei_ort/py.typed",
        "tei_ort/model/data/calibration-v1.txt",  # the int8 / uint8 calibration set
    ):
        assert shipped in names
    assert not [name for name in names if "fake" in name]  # the tests' fake engine stays there


def _test_modules() -> list[Path]:
    """The modules pytest collects (tests/support and tests/gpu_api's scripts are not)."""
    return sorted(Path(__file__).resolve().parents[1].rglob("test_*.py"))


def test_test_modules_import_only_tests_support() -> None:
    """Tests share code through tests/support, never by importing one another."""
    offenders = []
    for path in _test_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for name in names:
                if name.startswith("tests.") and not name.startswith("tests.support"):
                    offenders.append(f"{path.name}: {name}")
    assert not offenders


def test_no_test_skips_on_a_missing_import() -> None:
    """A missing test dependency is an error (README, "Development"): no importorskip."""
    skipping = [
        path.name
        for path in _test_modules()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr == "importorskip"
    ]
    assert not skipping
