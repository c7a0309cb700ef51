"""The arm64 CPU image: Dockerfile-cpu is the definition for both architectures (the base and
Debian's python3 are multi-arch; openvino is x86-64 only by its environment marker, and
scripts/slim_venv.py skips what is not there). Without buildx or an arm64 machine, what
can be checked here is that every dependency has a wheel for manylinux aarch64 and Debian
bookworm's Python 3.11: pip resolves the image's requirements for that platform (binary
wheels only, nothing built from source), reading the wheels' metadata, not the wheels.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from docker_images.report import Report, expect

PLATFORMS = ("manylinux_2_28_aarch64", "manylinux2014_aarch64", "manylinux_2_17_aarch64")
PYTHON = "3.11"  # Debian bookworm's python3


def check(report: Report, repo: Path) -> None:
    with report.step("arm64: the CPU image's dependencies resolve for manylinux aarch64") as step:
        deps = [sys.executable, str(repo / "scripts" / "pyproject_deps.py")]
        models = subprocess.run(
            [*deps, "--list", "model-packages"], capture_output=True, text=True, check=True
        ).stdout.splitlines()
        requirements = subprocess.run(
            deps,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        names = _resolve(_for_aarch64(requirements), [])
        names |= _resolve(models, ["--no-deps"])  # their metadata pulls torch (Makefile)
        expect("openvino" not in names, "openvino resolved for aarch64 (its marker is x86-64)")
        expect("onnxruntime" in names and "numpy" in names, f"resolved: {sorted(names)}")
        step.detail = (
            f"{len(names)} wheels, e.g. onnxruntime {names['onnxruntime']}, numpy "
            f"{names['numpy']}, {', '.join(models)}"
        )


def _for_aarch64(requirements: list[str]) -> list[str]:
    """Requirements whose markers hold on aarch64: pip judges markers by the machine it runs
    on, whatever --platform says (packaging is pip's own copy: this runs with pip anyway)."""
    from pip._vendor.packaging.requirements import Requirement

    kept = []
    for line in requirements:
        requirement = Requirement(line)
        marker = requirement.marker
        if marker is None or marker.evaluate({"platform_machine": "aarch64"}):
            requirement.marker = None
            kept.append(str(requirement))
    return kept


def _resolve(requirements: list[str], options: list[str]) -> dict[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        report_file = Path(tmp) / "report.json"
        platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--dry-run",
                "--quiet",
                "--disable-pip-version-check",
                "--ignore-installed",
                "--only-binary=:all:",
                *platforms,
                "--python-version",
                PYTHON,
                "--implementation",
                "cp",
                "--target",
                str(Path(tmp) / "target"),
                "--report",
                str(report_file),
                *options,
                *requirements,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        expect(done.returncode == 0, f"pip could not resolve for aarch64:\n{done.stderr[-3000:]}")
        installed = json.loads(report_file.read_text())["install"]
    return {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in installed}
