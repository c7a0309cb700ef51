"""The plan of a run: which rows are refused (and why), which are left to embed.

Built by the driver from the first pass (positions, ids and reasons of every row; no
texts). The same input always gives the same plan, so every restart agrees on it: an id
seen twice is accepted at its first usable row in input order and refused after that.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from tei_ort.corpus.inputs import DUPLICATE_ID


@dataclass
class Plan:
    total_rows: int
    accepted: int  # rows with a usable text and an id not seen before
    todo: dict[int, NDArray[np.int64]]  # file index -> row numbers still to embed, sorted
    todo_rows: int
    done_rows: int  # accepted rows already in part files
    rejects: pa.Table  # id, reason, file, row
    reasons: dict[str, int] = field(default_factory=dict)


def make_plan(blocks: Iterable[pa.Table], files: list[str], done: set[str]) -> Plan:
    """The plan from the first pass's blocks (columns _file, _row, id, reason)."""
    tables = [block.select(["_file", "_row", "id", "reason"]) for block in blocks]
    if tables:
        table = pa.concat_tables(tables)
    else:
        table = pa.table(
            {
                "_file": pa.array([], pa.int32()),
                "_row": pa.array([], pa.int64()),
                "id": pa.array([], pa.string()),
                "reason": pa.array([], pa.string()),
            }
        )
    file_index = table.column("_file").to_numpy().astype(np.int64)  # (N,)
    row_number = table.column("_row").to_numpy()  # (N,)
    order = np.lexsort((row_number, file_index))  # input order: file, then row
    ids = table.column("id").to_pylist()
    reasons = table.column("reason").to_pylist()

    seen: set[str] = set()
    todo_lists: dict[int, list[int]] = {}
    rejected: list[int] = []
    accepted = done_rows = 0
    for i in (int(i) for i in order):
        if reasons[i] is None:
            row_id = ids[i]
            if row_id in seen:
                reasons[i] = DUPLICATE_ID
            else:
                seen.add(row_id)
                accepted += 1
                if row_id in done:
                    done_rows += 1
                else:
                    todo_lists.setdefault(int(file_index[i]), []).append(int(row_number[i]))
                continue
        rejected.append(i)

    picked = np.asarray(rejected, dtype=np.int64)
    rejects = pa.table(
        {
            "id": pa.array([ids[i] for i in rejected], pa.string()),
            "reason": pa.array([reasons[i] for i in rejected], pa.string()),
            "file": pa.array([files[int(file_index[i])] for i in rejected], pa.string()),
            "row": pa.array(row_number[picked] if rejected else [], pa.int64()),
        }
    )
    todo = {k: np.asarray(v, dtype=np.int64) for k, v in todo_lists.items()}
    return Plan(
        total_rows=len(ids),
        accepted=accepted,
        todo=todo,
        todo_rows=sum(v.size for v in todo.values()),
        done_rows=done_rows,
        rejects=rejects,
        reasons=dict(Counter(reasons[i] for i in rejected)),
    )
