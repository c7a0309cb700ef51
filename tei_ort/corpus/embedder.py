"""The actor of the embed pass: one tei-ort engine, one part file per batch it is given.

It reuses the in-process API (``tei_ort.api.Model``): the server's validation and
tokenization, length-sorted batches under ``--max-batch-tokens``, the server's
postprocessing, so a row's vector is what /embed answers for its text.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from tei_ort.corpus.output import part_name, write_part
from tei_ort.errors import ConfigurationError
from tei_ort.serving import validation
from tei_ort.serving.embedding_types import EmbeddingType, Ranges, check_packable, encode
from tei_ort.serving.late_chunking import Chunking
from tei_ort.serving.postprocess import Mode, OutputSpec

#: the Parquet value type of each embedding type's fixed-size list column
ARROW_TYPES = {
    EmbeddingType.FLOAT: pa.float32(),
    EmbeddingType.INT8: pa.int8(),
    EmbeddingType.UINT8: pa.uint8(),
    EmbeddingType.BINARY: pa.int8(),
    EmbeddingType.UBINARY: pa.uint8(),
}


@dataclass(frozen=True)
class EmbedOptions:
    """What every actor needs: where to write, which model, how to run it."""

    out_dir: str
    model: dict[str, Any]  # keyword arguments of tei_ort.api.load
    max_batch_tokens: int
    truncate: bool
    threads: int | None
    run_token: str  # from output.claim: a superseded run's actors write nothing
    embedding_type: str = "float"  # as /embed's embedding_type
    # late chunking: chunks of chunk_size tokens (None: one vector per text)
    chunk_size: int | None = None
    chunk_overlap: int = 0
    late_chunking: bool = True  # False: each chunk embedded on its own


class CorpusEmbedder:
    def __init__(self, options: EmbedOptions) -> None:
        from tei_ort.api import load

        self.options = options
        self.out_dir = Path(options.out_dir)
        self.model = load(
            max_batch_tokens=options.max_batch_tokens, threads=options.threads, **options.model
        )
        self.sparse = self.model.encoder.is_splade
        # as /embed and /embed_sparse answer by default
        self.spec = (
            OutputSpec(Mode.SPARSE) if self.sparse else OutputSpec(Mode.POOLED, normalize=True)
        )
        self.model.encoder.check_embed(self.spec)
        self.kind = EmbeddingType(options.embedding_type)
        if options.chunk_size is not None and self.kind is not EmbeddingType.FLOAT:
            raise ConfigurationError(
                f"--embedding-type {self.kind.value} applies to whole-text vectors: late "
                "chunking (--chunk-size) writes float32 chunk vectors"
            )
        if self.sparse and self.kind is not EmbeddingType.FLOAT:
            raise ConfigurationError(
                f"--embedding-type {self.kind.value}: a SPLADE model gives sparse vectors"
            )
        if self.model.dimensions is not None:
            check_packable(self.model.dimensions, self.kind)
        self.ranges: Ranges | None = None
        if self.kind.calibrated:  # from the engine cache entry (or computed there once)
            self.ranges = self.model.calibrator.get().ranges(None, True)
        if options.chunk_size is not None:  # refuse a model that cannot chunk, at start
            chunking = Chunking(size=options.chunk_size, overlap=options.chunk_overlap)
            validation.check_chunked_inputs(self.model.info, [], chunking)

    def _chunked(self, texts: list[str]) -> tuple[dict[str, pa.Array], list[int]]:
        """Late chunking's columns: each text's chunk spans and vectors; its token count."""
        options = self.options
        assert options.chunk_size is not None
        chunked = self.model.embed_chunks(
            texts,
            size=options.chunk_size,
            overlap=options.chunk_overlap,
            late=options.late_chunking,
        )
        width = chunked[0].vectors.shape[1]
        spans = pa.array(
            [[list(span) for span in c.spans] for c in chunked],
            pa.list_(pa.list_(pa.int32(), 2)),
        )
        flat = pa.array(np.concatenate([c.vectors.reshape(-1) for c in chunked]))
        vectors = pa.FixedSizeListArray.from_arrays(flat, width)
        offsets = np.concatenate([[0], np.cumsum([len(c.spans) for c in chunked])]).astype(np.int32)
        columns = {
            "chunk_spans": spans,
            "chunk_embeddings": pa.ListArray.from_arrays(pa.array(offsets), vectors),
        }
        lengths = [len(e) for e in self.model.loaded.tokenizer.encode_batch(texts)]
        return columns, lengths

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts: list[str] = batch.column("text").to_pylist()
        columns: dict[str, pa.Array] = {"id": batch.column("id")}
        if self.options.chunk_size is not None:
            chunk_columns, lengths = self._chunked(texts)
            columns.update(chunk_columns)
            return self._write(batch, columns, np.asarray(lengths, dtype=np.int32))
        encoded = self.model.encoder.encode(texts, self.options.truncate, "right", None)
        vectors = self.model.answer_encoded(encoded, self.spec)
        if self.sparse:
            indices, values = [], []
            for vector in vectors:
                (nonzero,) = np.nonzero(vector)
                indices.append(nonzero.astype(np.uint32))
                values.append(vector[nonzero])
            columns["indices"] = pa.array(indices, pa.list_(pa.uint32()))
            columns["values"] = pa.array(values, pa.list_(pa.float32()))
        else:
            matrix = np.stack(vectors).astype(np.float32, copy=False)  # (N, D)
            typed = encode(matrix, self.kind, self.ranges)  # (N, D) or (N, D / 8)
            flat = pa.array(typed.reshape(-1), type=ARROW_TYPES[self.kind])
            columns["embedding"] = pa.FixedSizeListArray.from_arrays(flat, typed.shape[1])
        tokens = np.asarray([len(e) for e in encoded], dtype=np.int32)  # (N,)
        return self._write(batch, columns, tokens)

    def _write(self, batch: pa.Table, columns: dict[str, pa.Array], tokens: Any) -> pa.Table:
        columns["tokens"] = pa.array(tokens)

        files = batch.column("_file").to_numpy()
        rows = batch.column("_row").to_numpy()
        first = int(np.lexsort((rows, files))[0])
        name = part_name(int(files[first]), int(rows[first]))
        # FileExistsError: Ray Data retried this batch, whose first actor died after writing
        # and before answering; the name is the batch's first row, so the file holds it
        with contextlib.suppress(FileExistsError):
            write_part(pa.table(columns), self.out_dir / name, self.options.run_token)
        return pa.table(
            {
                "part": [name],
                "rows": [batch.num_rows],
                "tokens": [int(tokens.sum())],
            }
        )
