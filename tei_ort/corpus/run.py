"""The driver of ``tei-ort embed-corpus``: plan, embed what is left, summarize."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tei_ort.corpus.embedder import CorpusEmbedder, EmbedOptions
from tei_ort.corpus.inputs import Fields, list_input_files
from tei_ort.corpus.output import (
    REJECTS_FILE,
    SUMMARY_FILE,
    check_run_record,
    claim,
    done_ids,
    exclusive,
    remove_leftovers,
    write_atomic,
    write_json_atomic,
)
from tei_ort.corpus.plan import Plan, make_plan
from tei_ort.corpus.source import CorpusDatasource, LengthLimit
from tei_ort.model.loading import ModelOptions, prepare_engine

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CorpusJob:
    input: str
    output: str
    model: ModelOptions
    fields: Fields = field(default_factory=Fields)
    truncate: bool = True
    embedding_type: str = "float"  # float, int8, uint8, binary, ubinary
    max_batch_tokens: int = 16384
    num_workers: int = 1
    cpus_per_worker: float = 1.0
    rows_per_file: int = 4096
    ray_address: str | None = None
    progress: bool = True
    # late chunking: one vector per chunk of chunk_size tokens (None: one per text); a
    # text longer than the model's window is run in overlapping windows, never truncated
    chunk_size: int | None = None
    chunk_overlap: int = 0
    late_chunking: bool = True


def run_corpus(job: CorpusJob) -> dict[str, Any]:
    """Embed ``job.input`` into ``job.output``; returns the summary (also in _summary.json)."""
    out_dir = Path(job.output)
    with exclusive(out_dir):
        return _run(job, out_dir)


def _run(job: CorpusJob, out_dir: Path) -> dict[str, Any]:
    import ray
    import ray.data

    start = time.perf_counter()
    files = list_input_files(job.input)
    # built (or found) once here, before the actors start and load it from the cache
    prepared = prepare_engine(job.model)
    check_run_record(out_dir, _run_record(job, files, prepared.entry_dir.name))
    # before done_ids: actors of a killed run may still be writing
    run_token = claim(out_dir)
    remove_leftovers(out_dir)

    if not ray.is_initialized():
        ray.init(address=job.ray_address, logging_level=logging.WARNING, log_to_driver=True)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # ours counts the rows written (tqdm)
    context.print_on_execution_start = False

    fields = job.fields
    limit = None
    if not job.truncate and job.chunk_size is None:
        max_length = min(prepared.info.max_input_length, job.max_batch_tokens)
        limit = LengthLimit(str(prepared.info.path), max_length, job.model)
    first = CorpusDatasource(files, fields, with_text=False, length_limit=limit)
    blocks = ray.data.read_datasource(first).iter_batches(batch_size=None, batch_format="pyarrow")
    plan = make_plan(blocks, files, done_ids(out_dir))
    write_atomic(plan.rejects, out_dir / REJECTS_FILE, replace=True)
    logger.info(
        "%d rows: %d to embed, %d already written, %d refused",
        plan.total_rows,
        plan.todo_rows,
        plan.done_rows,
        plan.rejects.num_rows,
    )

    written = tokens = 0
    embed_start = time.perf_counter()
    if plan.todo_rows:
        written, tokens = _embed(job, files, plan, out_dir, run_token)
    embed_seconds = time.perf_counter() - embed_start
    seconds = time.perf_counter() - start
    summary = {
        "input_rows": plan.total_rows,
        "embedded_rows": plan.done_rows + written,
        "written_now": written,
        "already_written": plan.done_rows,
        "tokens_now": tokens,
        "rejected_rows": plan.rejects.num_rows,
        "rejected_by_reason": dict(sorted(plan.reasons.items())),
        "seconds": round(seconds, 3),
        # the embed pass, actor start-up included (the plan pass and Ray's start are not)
        "embed_seconds": round(embed_seconds, 3),
        "rows_per_second": round(written / embed_seconds, 1) if written else 0.0,
    }
    write_json_atomic(summary, out_dir / SUMMARY_FILE)
    return summary


def _embed(
    job: CorpusJob, files: list[str], plan: Plan, out_dir: Path, run_token: str
) -> tuple[int, int]:
    import ray
    import ray.data
    from tqdm import tqdm

    model = {k: v for k, v in asdict(job.model).items() if k not in _NOT_FOR_LOAD}
    options = EmbedOptions(
        out_dir=str(out_dir),
        model=model,
        max_batch_tokens=job.max_batch_tokens,
        truncate=job.truncate,
        threads=max(1, int(job.cpus_per_worker)),
        embedding_type=job.embedding_type,
        run_token=run_token,
        chunk_size=job.chunk_size,
        chunk_overlap=job.chunk_overlap,
        late_chunking=job.late_chunking,
    )
    source = CorpusDatasource(files, job.fields, with_text=True, todo=plan.todo)
    # the reads reserve no CPU: actors that take every CPU (one worker of --cpus-per-worker
    # = all cores) would otherwise wait forever for rows that cannot be read
    reads = max(1, min(job.num_workers + 1, len(plan.todo)))  # one read task per file
    rows = ray.data.read_datasource(source, num_cpus=0, concurrency=reads)
    results = rows.map_batches(
        CorpusEmbedder,
        fn_constructor_args=(options,),
        batch_size=job.rows_per_file,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=job.num_workers),
        num_cpus=job.cpus_per_worker,
    )
    written = tokens = 0
    with tqdm(
        total=plan.todo_rows,
        unit="rows",
        desc="embed-corpus",
        disable=not job.progress,
        smoothing=0.1,
    ) as bar:
        for batch in results.iter_batches(batch_size=None, batch_format="pyarrow"):
            rows = sum(batch.column("rows").to_pylist())
            written += rows
            tokens += sum(batch.column("tokens").to_pylist())
            bar.update(rows)
    return written, tokens


#: ModelOptions fields that tei_ort.api.load takes from elsewhere
_NOT_FOR_LOAD = frozenset({"max_batch_tokens", "threads"})


def _run_record(job: CorpusJob, files: list[str], engine: str) -> dict[str, Any]:
    """What the output rows depend on: a restart with other values is refused."""
    return {
        "input_files": [[path, os.path.getsize(path), os.stat(path).st_mtime_ns] for path in files],
        "text_field": job.fields.text,
        "id_field": job.fields.id,
        "truncate": job.truncate,
        "max_batch_tokens": job.max_batch_tokens,
        "model_id": job.model.model_id,
        "engine": engine,  # the engine cache key digest: model, weights, dtype, pooling...
        "pooling": None if job.model.pooling is None else job.model.pooling.value,
        "dense_path": job.model.dense_path,
        "chunks": None
        if job.chunk_size is None
        else [job.chunk_size, job.chunk_overlap, job.late_chunking],
        # only when typed: a float run's record stays what earlier tei-ort versions wrote
        **({"embedding_type": job.embedding_type} if job.embedding_type != "float" else {}),
    }
