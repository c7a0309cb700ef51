"""The output directory of a corpus run: part files, the rejects file, the run record.

::

    DIR/part-<file:05d>-<row:012d>.parquet   id, embedding | indices + values, tokens
    DIR/rejects.parquet                      id, reason, file, row
    DIR/_run.json                            what the rows depend on (checked on restart)
    DIR/_summary.json                        the last run's counts
    DIR/.writer                              the token of the run allowed to add parts

A part file is named for the position of its first row and written under a temporary
name, then linked into place: it exists complete or not at all, and a name is never
written twice (``os.link`` refuses an existing name).

Killing a run's driver does not stop its Ray actors at once: one may be writing a part
while the next run reads what is done. So each run claims the directory with a fresh
token, and an actor links a part only while its run's token is the current one. Claim and
link take the same lock, so a part is either linked before the claim (and counted as done
by the new run) or refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tei_ort.corpus.file_lock import file_lock
from tei_ort.errors import ConfigurationError

PART_GLOB = "part-*.parquet"
REJECTS_FILE = "rejects.parquet"
RUN_FILE = "_run.json"
SUMMARY_FILE = "_summary.json"
WRITER_FILE = ".writer"
_LINK_LOCK = ".link.lock"
_TMP_PREFIX = ".tmp-"


class SupersededRunError(RuntimeError):
    """A part from a run whose output directory another run has since claimed."""


def part_name(file_index: int, row: int) -> str:
    return f"part-{file_index:05d}-{row:012d}.parquet"


def write_atomic(table: pa.Table, path: Path, *, replace: bool = False) -> None:
    """Write ``table`` to ``path`` so that ``path`` appears complete or not at all."""
    with _written(table, path) as tmp:
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # FileExistsError rather than a silent overwrite


def write_part(table: pa.Table, path: Path, run_token: str) -> None:
    """Link a part file into place if run ``run_token`` still holds its directory.

    Raises SupersededRunError (and writes nothing) once another run has claimed it.
    """
    with _written(table, path) as tmp, file_lock(path.parent / _LINK_LOCK):
        if _current_writer(path.parent) != run_token:
            raise SupersededRunError(f"{path.parent} was claimed by a later run")
        os.link(tmp, path)  # FileExistsError rather than a silent overwrite


def claim(out_dir: Path) -> str:
    """Make a new run the only one allowed to add parts to ``out_dir``; its token.

    Call it before reading what is done: parts of earlier runs land before it or never.
    """
    token = uuid.uuid4().hex
    with file_lock(out_dir / _LINK_LOCK):
        tmp = out_dir / f"{_TMP_PREFIX}{token}-{WRITER_FILE}"
        tmp.write_text(token)
        os.replace(tmp, out_dir / WRITER_FILE)
    return token


def _current_writer(out_dir: Path) -> str | None:
    try:
        return (out_dir / WRITER_FILE).read_text()
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def _written(table: pa.Table, path: Path) -> Iterator[Path]:
    """``table`` in a synced temporary file next to ``path``, removed afterwards."""
    tmp = path.with_name(f"{_TMP_PREFIX}{uuid.uuid4().hex}-{path.name}")
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_json_atomic(data: dict[str, Any], path: Path) -> None:
    tmp = path.with_name(f"{_TMP_PREFIX}{uuid.uuid4().hex}-{path.name}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def done_ids(out_dir: Path) -> set[str]:
    """The ids in the part files already written (by earlier, interrupted runs)."""
    ids: set[str] = set()
    for path in sorted(out_dir.glob(PART_GLOB)):
        ids.update(pq.read_table(path, columns=["id"]).column("id").to_pylist())
    return ids


def remove_leftovers(out_dir: Path) -> None:
    """Temporary files of a killed run (never linked into place)."""
    for path in out_dir.glob(f"{_TMP_PREFIX}*"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def check_run_record(out_dir: Path, record: dict[str, Any]) -> None:
    """Refuse to continue a run made with other arguments (its rows would not match)."""
    path = out_dir / RUN_FILE
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous != record:
            changed = sorted(
                key for key in set(previous) | set(record) if previous.get(key) != record.get(key)
            )
            raise ConfigurationError(
                f"{out_dir} holds a run with other arguments or input ({', '.join(changed)}); "
                "use another --output directory or remove it"
            )
        return
    write_json_atomic(record, path)


@contextlib.contextmanager
def exclusive(out_dir: Path) -> Iterator[None]:
    """One run at a time per output directory: a second one is refused."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(file_lock(out_dir / ".lock", wait=False))
        except BlockingIOError:
            raise ConfigurationError(f"another embed-corpus run writes to {out_dir}") from None
        yield
