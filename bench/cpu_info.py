"""The CPU a figure was measured on, for every bench's report."""

from __future__ import annotations

from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


def cpu_name() -> str:
    """/proc/cpuinfo's first ``model name`` ("unknown" where there is none)."""
    if CPUINFO.is_file():
        for line in CPUINFO.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"
