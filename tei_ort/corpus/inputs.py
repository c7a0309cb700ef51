"""Input files of a corpus: which files, and their rows as (id, text, reason) triples.

JSONL, Parquet and CSV; ``PATH`` is a file, a directory (every file of those formats in
it, recursively) or a glob. Files are taken in sorted order, and rows in file order, so a
row's position (file index, row number) is the same in every run over the same input.

A row's *reason* is None when it has a usable id and text, else why it is refused.
"""

from __future__ import annotations

import csv
import glob
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tei_ort.errors import ConfigurationError

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".csv": "csv"}

# reasons a row is refused, as they appear in the rejects file
MISSING_ID = "missing id"
INVALID_ID = "invalid id"
MISSING_TEXT = "missing text field"
NULL_TEXT = "null text"
EMPTY_TEXT = "empty text"
NOT_A_STRING = "text is not a string"
INVALID_JSON = "invalid json"
DUPLICATE_ID = "duplicate id"
TOO_LONG = "too long"

_ABSENT = object()


@dataclass(frozen=True)
class Fields:
    text: str = "text"
    id: str = "id"


@dataclass(frozen=True)
class Row:
    id: str | None
    text: str | None
    reason: str | None


def file_format(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ConfigurationError(f"{path}: unknown input format (use .jsonl, .parquet or .csv)")
    return FORMATS[suffix]


def list_input_files(path: str) -> list[str]:
    """The input files for ``--input``, sorted; an error when there are none."""
    candidate = Path(path)
    if candidate.is_file():
        file_format(path)
        return [str(candidate.resolve())]
    if candidate.is_dir():
        found = [p for p in candidate.rglob("*") if p.is_file() and p.suffix.lower() in FORMATS]
    else:
        found = [Path(p) for p in glob.glob(path, recursive=True) if Path(p).is_file()]
        for p in found:
            file_format(str(p))
    files = sorted(str(p.resolve()) for p in found if not p.name.startswith("."))
    if not files:
        raise ConfigurationError(f"no JSONL, Parquet or CSV input found at {path}")
    return files


def classify(raw_id: Any, raw_text: Any) -> Row:
    """A row from its raw values (``_ABSENT`` where a field is missing)."""
    if raw_id is _ABSENT or raw_id is None or raw_id == "":
        return Row(None, None, MISSING_ID)
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
        return Row(None, None, INVALID_ID)
    row_id = str(raw_id)
    if raw_text is _ABSENT:
        return Row(row_id, None, MISSING_TEXT)
    if raw_text is None:
        return Row(row_id, None, NULL_TEXT)
    if not isinstance(raw_text, str):
        return Row(row_id, None, NOT_A_STRING)
    if not raw_text:
        return Row(row_id, None, EMPTY_TEXT)
    return Row(row_id, raw_text, None)


def read_rows(path: str, fields: Fields, chunk_rows: int) -> Iterator[tuple[int, list[Row]]]:
    """(first row number, rows) chunks of one file, in file order."""
    kind = file_format(path)
    if kind == "jsonl":
        yield from _chunks(_jsonl_rows(path, fields), chunk_rows)
    elif kind == "csv":
        yield from _chunks(_csv_rows(path, fields), chunk_rows)
    else:
        yield from _parquet_chunks(path, fields, chunk_rows)


def _chunks(rows: Iterator[Row], chunk_rows: int) -> Iterator[tuple[int, list[Row]]]:
    chunk: list[Row] = []
    start = 0
    for row in rows:
        chunk.append(row)
        if len(chunk) == chunk_rows:
            yield start, chunk
            start += len(chunk)
            chunk = []
    if chunk:
        yield start, chunk


def _jsonl_rows(path: str, fields: Fields) -> Iterator[Row]:
    """One row per non-blank line; a line that is not a JSON object is refused."""
    with open(path, "rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                yield Row(None, None, INVALID_JSON)
                continue
            if not isinstance(record, dict):
                yield Row(None, None, INVALID_JSON)
                continue
            yield classify(record.get(fields.id, _ABSENT), record.get(fields.text, _ABSENT))


def _csv_rows(path: str, fields: Fields) -> Iterator[Row]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        for record in reader:
            yield classify(record.get(fields.id, _ABSENT), record.get(fields.text, _ABSENT))


def _parquet_chunks(path: str, fields: Fields, chunk_rows: int) -> Iterator[tuple[int, list[Row]]]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    names = set(parquet.schema_arrow.names)
    columns = [name for name in (fields.id, fields.text) if name in names]
    start = 0
    for batch in parquet.iter_batches(batch_size=chunk_rows, columns=columns or None):
        count = batch.num_rows
        absent = [_ABSENT] * count
        ids = batch.column(fields.id).to_pylist() if fields.id in names else absent
        texts = batch.column(fields.text).to_pylist() if fields.text in names else absent
        yield start, [classify(i, t) for i, t in zip(ids, texts, strict=True)]
        start += count
