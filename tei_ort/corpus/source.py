"""The Ray Data source of a corpus: one read task per input file, rows tagged by position.

Each block carries ``_file`` (the file's index in the sorted input list), ``_row`` (the
row's number in that file), ``id``, ``reason`` and, when asked, ``text``. With ``todo``
only the listed rows of each file come out (the rows a run still has to embed).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray
from ray.data.block import BlockMetadata
from ray.data.context import DataContext
from ray.data.datasource import Datasource, ReadTask

from tei_ort.corpus.inputs import TOO_LONG, Fields, Row, read_rows
from tei_ort.model.tokenization import Tokenizer

if TYPE_CHECKING:
    from tei_ort.model.loading import ModelOptions

#: the most rows in one block of the read
BLOCK_ROWS = 2048


@dataclass(frozen=True)
class LengthLimit:
    """``--no-truncate``: a text over the model's input limit is refused, as /embed does."""

    tokenizer_dir: str  # the model's directory on the driver's node
    max_input_length: int
    model: ModelOptions | None = None  # resolves the model on a node without that directory

    def tokenizer(self) -> Tokenizer:
        """One per worker process, reused by its read tasks."""
        if self.tokenizer_dir not in _TOKENIZERS:
            path = Path(self.tokenizer_dir)
            if not path.is_dir() and self.model is not None:
                from tei_ort.model.hub import resolve_model

                path = resolve_model(
                    self.model.model_id,
                    revision=self.model.revision,
                    token=self.model.hf_token,
                    cache_dir=self.model.huggingface_hub_cache,
                ).path
            _TOKENIZERS[self.tokenizer_dir] = Tokenizer.from_dir(path)
        return _TOKENIZERS[self.tokenizer_dir]

    def too_long(self, texts: Sequence[str]) -> list[bool]:
        from tei_ort.serving.encoding import MAX_CHAR_MULTIPLIER

        tokenizer = self.tokenizer()
        limit = self.max_input_length * MAX_CHAR_MULTIPLIER
        result = [len(text) > limit for text in texts]
        short = [i for i, over in enumerate(result) if not over]
        encoded = tokenizer.encode_batch([texts[i] for i in short]) if short else []
        for i, encoding in zip(short, encoded, strict=True):
            result[i] = len(encoding) > self.max_input_length
        return result


_TOKENIZERS: dict[str, Tokenizer] = {}


class CorpusDatasource(Datasource):
    def __init__(
        self,
        files: Sequence[str],
        fields: Fields,
        *,
        with_text: bool,
        todo: Mapping[int, NDArray[np.int64]] | None = None,
        length_limit: LengthLimit | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.files = list(files)
        self.fields = fields
        self.with_text = with_text
        self.todo = todo
        self.length_limit = length_limit

    def get_name(self) -> str:
        return "Corpus"

    def estimate_inmemory_data_size(self) -> int | None:
        return sum(os.path.getsize(path) for path in self.files)

    def get_read_tasks(
        self,
        parallelism: int,
        per_task_row_limit: int | None = None,
        data_context: DataContext | None = None,
    ) -> list[ReadTask]:
        tasks = []
        for index, path in enumerate(self.files):
            rows = None if self.todo is None else self.todo.get(index)
            if self.todo is not None and (rows is None or rows.size == 0):
                continue  # nothing left to do in this file
            metadata = BlockMetadata(
                num_rows=None if rows is None else int(rows.size),
                size_bytes=os.path.getsize(path),
                input_files=(path,),
                exec_stats=None,
            )
            read = partial(self._read_file, index, path, rows)
            tasks.append(ReadTask(read, metadata))
        return tasks

    def _read_file(self, index: int, path: str, rows: NDArray[np.int64] | None) -> Iterable[Any]:
        for start, chunk in read_rows(path, self.fields, BLOCK_ROWS):
            numbers = np.arange(start, start + len(chunk), dtype=np.int64)
            keep = list(range(len(chunk)))
            if rows is not None:
                keep = [int(i) for i in np.flatnonzero(np.isin(numbers, rows, assume_unique=True))]
                if not keep:
                    continue
            chunk = self._checked([chunk[i] for i in keep])
            yield self._block(index, numbers[keep], chunk)

    def _checked(self, chunk: list[Row]) -> list[Row]:
        if self.length_limit is None:
            return chunk
        usable = [i for i, row in enumerate(chunk) if row.reason is None]
        texts = [chunk[i].text or "" for i in usable]
        for i, over in zip(usable, self.length_limit.too_long(texts), strict=True):
            if over:
                chunk[i] = Row(chunk[i].id, None, TOO_LONG)
        return chunk

    def _block(self, index: int, numbers: NDArray[np.int64], chunk: list[Row]) -> pa.Table:
        columns: dict[str, pa.Array] = {
            "_file": pa.array(np.full(len(chunk), index, dtype=np.int32)),
            "_row": pa.array(numbers),
            "id": pa.array([row.id for row in chunk], pa.string()),
            "reason": pa.array([row.reason for row in chunk], pa.string()),
        }
        if self.with_text:
            columns["text"] = pa.array([row.text for row in chunk], pa.string())
        return pa.table(columns)
