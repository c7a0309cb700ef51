"""What an engine cache entry holds, recorded when it is built and checked when it is used.

``manifest.json`` lists every file of the entry with its size and CRC-32. It is written
last, so an entry without it was never finished (a killed build, an entry of an older
tei-ort); a file whose size or checksum differs was damaged after the build. CRC-32 is
there to catch damage (truncation, zeroed pages, a bad copy), not tampering: it reads at
about twice the speed of SHA-256, and every start reads the whole entry.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

MANIFEST_FILE = "manifest.json"
_CHUNK = 1 << 20
_NO_MANIFEST = "missing or unreadable (an unfinished build, or one by an older tei-ort)"


@dataclass(frozen=True)
class FileRecord:
    size: int
    crc32: str


@dataclass(frozen=True)
class EntryCheck:
    """The result of checking an entry against its manifest: file name -> what is wrong."""

    problems: dict[str, str] = field(default_factory=dict)
    recorded: frozenset[str] = frozenset()  # the files the manifest lists

    @property
    def complete(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        return "; ".join(f"{name}: {problem}" for name, problem in sorted(self.problems.items()))


def file_crc32(path: Path) -> str:
    crc = 0
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            crc = zlib.crc32(chunk, crc)
    return f"{crc:08x}"


def record_files(entry: Path) -> dict[str, FileRecord]:
    """Size and CRC-32 of every file directly in ``entry`` (the manifest and dot files aside)."""
    records = {}
    for path in sorted(entry.iterdir()):
        if path.name == MANIFEST_FILE or path.name.startswith(".") or not path.is_file():
            continue
        records[path.name] = FileRecord(path.stat().st_size, file_crc32(path))
    return records


def write_manifest(entry: Path) -> None:
    """Record the entry's files; written beside and renamed, so it appears whole or not."""
    records = record_files(entry)
    body = {name: {"size": r.size, "crc32": r.crc32} for name, r in records.items()}
    tmp = entry / f".{MANIFEST_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"files": body}, indent=2, sort_keys=True))
    tmp.chmod(0o644)
    os.replace(tmp, entry / MANIFEST_FILE)


def read_manifest(entry: Path) -> dict[str, FileRecord] | None:
    """The recorded files, or None when the manifest is missing or unreadable."""
    try:
        raw = json.loads((entry / MANIFEST_FILE).read_text())
        return {
            str(name): FileRecord(int(item["size"]), str(item["crc32"]))
            for name, item in raw["files"].items()
        }
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def check_entry(entry: Path, required: tuple[str, ...]) -> EntryCheck:
    """Compare the entry's files with its manifest; ``required`` files must be recorded.

    Sizes are compared first (a truncated file costs a ``stat``); only then is each file
    read for its checksum.
    """
    if not entry.is_dir():
        return EntryCheck({"(entry)": "missing"})
    records = read_manifest(entry)
    if records is None:
        return EntryCheck({MANIFEST_FILE: _NO_MANIFEST})
    problems: dict[str, str] = {}
    for name in required:
        if name not in records:
            problems[name] = "not recorded in the manifest"
    for name, record in records.items():
        path = entry / name
        try:
            size = path.stat().st_size
        except OSError:
            problems[name] = "missing"
            continue
        if size != record.size:
            problems[name] = f"{size} bytes, the build wrote {record.size}"
    for name, record in records.items():
        if name not in problems and file_crc32(entry / name) != record.crc32:
            problems[name] = "content differs from what the build wrote (CRC-32)"
    return EntryCheck(problems, frozenset(records))
