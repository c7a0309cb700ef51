"""embed-corpus without a Ray cluster: inputs, the plan, atomic output, the embedder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tei_ort
from tei_ort.corpus.embedder import CorpusEmbedder, EmbedOptions
from tei_ort.corpus.inputs import Fields, Row, classify, list_input_files, read_rows
from tei_ort.corpus.output import (
    SupersededRunError,
    check_run_record,
    claim,
    done_ids,
    exclusive,
    part_name,
    write_atomic,
    write_part,
)
from tei_ort.corpus.plan import make_plan
from tei_ort.corpus.source import CorpusDatasource, LengthLimit
from tei_ort.errors import ConfigurationError
from tei_ort.model.info import Pooling
from tei_ort.model.tokenization import Tokenizer
from tests.support.app import MINILM_DIR
from tests.support.model_dirs import package_model_dir
from tests.support.tiny_embedder import make_embedder

ABSENT = object()


@pytest.mark.parametrize(
    ("raw_id", "raw_text", "expected"),
    [
        ("a", "text", Row("a", "text", None)),
        (7, "text", Row("7", "text", None)),
        (None, "text", Row(None, None, "missing id")),
        ("", "text", Row(None, None, "missing id")),
        (True, "text", Row(None, None, "invalid id")),
        (1.5, "text", Row(None, None, "invalid id")),
        ("a", None, Row("a", None, "null text")),
        ("a", "", Row("a", None, "empty text")),
        ("a", ["x"], Row("a", None, "text is not a string")),
    ],
)
def test_classify(raw_id: object, raw_text: object, expected: Row) -> None:
    assert classify(raw_id, raw_text) == expected


def test_missing_fields_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"id": "a"}\n\n{"text": "t"}\n[1, 2]\n{"id": "b", "body": "t"}\n')
    (_, rows), *_ = read_rows(str(path), Fields(text="body"), 100)
    assert [r.reason for r in rows] == ["missing text field", "missing id", "invalid json", None]


def test_formats_and_paths(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.jsonl").write_text('{"id": "1", "text": "one"}\n')
    (tmp_path / "sub" / "b.csv").write_text('id,text\n2,two\n3,""\n')
    pq.write_table(pa.table({"id": [4], "text": ["four"]}), tmp_path / "sub" / "c.parquet")
    (tmp_path / "notes.txt").write_text("not an input")
    files = list_input_files(str(tmp_path))
    assert [Path(f).name for f in files] == ["a.jsonl", "b.csv", "c.parquet"]
    assert list_input_files(str(tmp_path / "sub" / "*.csv")) == [files[1]]
    assert list_input_files(files[0]) == [files[0]]
    rows = [row for f in files for _, chunk in read_rows(f, Fields(), 1) for row in chunk]
    assert rows == [
        Row("1", "one", None),
        Row("2", "two", None),
        Row("3", None, "empty text"),
        Row("4", "four", None),
    ]
    with pytest.raises(ConfigurationError, match="no JSONL"):
        list_input_files(str(tmp_path / "missing-*.jsonl"))


def _pass_one(rows: list[tuple[int, int, str | None, str | None]]) -> pa.Table:
    files, numbers, ids, reasons = zip(*rows, strict=True)
    return pa.table(
        {
            "_file": pa.array(files, pa.int32()),
            "_row": pa.array(numbers, pa.int64()),
            "id": pa.array(ids, pa.string()),
            "reason": pa.array(reasons, pa.string()),
        }
    )


def test_plan_keeps_the_first_usable_row_of_an_id_and_skips_done_ids() -> None:
    # blocks arrive in any order; the plan follows input order (file, row)
    blocks = [
        _pass_one([(1, 0, "a", None), (1, 1, "d", None)]),
        _pass_one([(0, 0, "a", "null text"), (0, 1, "b", None), (0, 2, "a", None)]),
        _pass_one([(0, 3, "b", None), (0, 4, None, "invalid json"), (0, 5, "c", None)]),
    ]
    plan = make_plan(blocks, ["f0", "f1"], done={"c"})
    assert plan.total_rows == 8 and plan.accepted == 4 and plan.done_rows == 1
    assert {k: v.tolist() for k, v in plan.todo.items()} == {0: [1, 2], 1: [1]}
    assert plan.todo_rows == 3
    assert plan.rejects.to_pylist() == [
        {"id": "a", "reason": "null text", "file": "f0", "row": 0},
        {"id": "b", "reason": "duplicate id", "file": "f0", "row": 3},
        {"id": None, "reason": "invalid json", "file": "f0", "row": 4},
        {"id": "a", "reason": "duplicate id", "file": "f1", "row": 0},
    ]
    assert plan.reasons == {"null text": 1, "duplicate id": 2, "invalid json": 1}


def test_part_files_are_never_overwritten(tmp_path: Path) -> None:
    table = pa.table({"id": ["a"]})
    path = tmp_path / part_name(3, 120)
    assert path.name == "part-00003-000000000120.parquet"
    write_atomic(table, path)
    with pytest.raises(FileExistsError):
        write_atomic(pa.table({"id": ["b"]}), path)
    assert pq.read_table(path).column("id").to_pylist() == ["a"]
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left


def test_a_superseded_run_adds_no_part(tmp_path: Path) -> None:
    killed = claim(tmp_path)
    write_part(pa.table({"id": ["a"]}), tmp_path / part_name(0, 0), killed)
    current = claim(tmp_path)  # the next run, while the killed run's actors still write
    assert current != killed
    with pytest.raises(SupersededRunError):
        write_part(pa.table({"id": ["b"]}), tmp_path / part_name(0, 1), killed)
    assert done_ids(tmp_path) == {"a"}
    write_part(pa.table({"id": ["c"]}), tmp_path / part_name(0, 2), current)
    assert done_ids(tmp_path) == {"a", "c"}
    assert not list(tmp_path.glob(".tmp-*"))


def test_a_run_with_other_arguments_is_refused(tmp_path: Path) -> None:
    check_run_record(tmp_path, {"model_id": "m", "text_field": "text"})
    check_run_record(tmp_path, {"model_id": "m", "text_field": "text"})
    with pytest.raises(ConfigurationError, match="text_field"):
        check_run_record(tmp_path, {"model_id": "m", "text_field": "body"})


def test_one_run_per_output_directory(tmp_path: Path) -> None:
    with (
        exclusive(tmp_path),
        pytest.raises(ConfigurationError, match="another"),
        exclusive(tmp_path),
    ):
        pass


def test_source_reads_only_the_rows_left(tmp_path: Path) -> None:
    lines = [json.dumps({"id": f"r{i}", "text": "word " * i or "x"}) for i in range(10)]
    (tmp_path / "a.jsonl").write_text("\n".join(lines))
    files = list_input_files(str(tmp_path))
    todo = {0: np.asarray([2, 5, 9], dtype=np.int64)}
    source = CorpusDatasource(files, Fields(), with_text=True, todo=todo)
    (task,) = source.get_read_tasks(1)
    table = pa.concat_tables(list(task()))
    assert table.column("_row").to_pylist() == [2, 5, 9]
    assert table.column("id").to_pylist() == ["r2", "r5", "r9"]
    assert CorpusDatasource(files, Fields(), with_text=True, todo={}).get_read_tasks(1) == []


def test_no_truncate_refuses_long_texts(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(
        json.dumps({"id": "short", "text": "a b c"}) + "\n"
        + json.dumps({"id": "long", "text": "word " * 40}) + "\n"
    )  # fmt: skip
    limit = LengthLimit(str(MINILM_DIR), max_input_length=16)
    source = CorpusDatasource(
        list_input_files(str(tmp_path)), Fields(), with_text=False, length_limit=limit
    )
    (task,) = source.get_read_tasks(1)
    table = pa.concat_tables(list(task()))
    assert table.column("reason").to_pylist() == [None, "too long"]


def _batch(texts: list[str]) -> pa.Table:
    return pa.table(
        {
            "_file": pa.array([0] * len(texts), pa.int32()),
            "_row": pa.array(range(7, 7 + len(texts)), pa.int64()),
            "id": [f"t{i}" for i in range(len(texts))],
            "text": texts,
        }
    )


TEXTS = ["a short one", "a much longer text that has many more words in it", "mid length"]


def test_embedder_writes_what_the_api_answers(tmp_path: Path) -> None:
    model_dir = make_embedder(tmp_path / "model")
    cache = str(tmp_path / "engines")
    model = {"model_id": str(model_dir), "engine_cache": cache}
    options = EmbedOptions(str(tmp_path), model, 16384, True, 1, claim(tmp_path))
    summary = CorpusEmbedder(options)(_batch(TEXTS))
    lengths = [len(e) for e in Tokenizer.from_dir(model_dir).encode_batch(TEXTS)]
    assert summary.to_pylist() == [
        {"part": "part-00000-000000000007.parquet", "rows": 3, "tokens": sum(lengths)}
    ]
    table = pq.read_table(tmp_path / "part-00000-000000000007.parquet")
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 32)
    expected = tei_ort.load(str(model_dir), engine_cache=cache).embed(TEXTS)  # (3, 32)
    got = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
    assert float(np.max(np.abs(got - expected))) <= 1e-5
    assert table.column("tokens").to_pylist() == lengths


def test_embedder_writes_splade_indices_and_values(tmp_path: Path) -> None:
    model_dir = str(package_model_dir("cognition"))
    cache = str(tmp_path / "engines")
    model = {"model_id": model_dir, "engine_cache": cache, "pooling": Pooling.SPLADE}
    options = EmbedOptions(str(tmp_path), model, 16384, True, 1, claim(tmp_path))
    CorpusEmbedder(options)(_batch(TEXTS))
    table = pq.read_table(tmp_path / "part-00000-000000000007.parquet")
    assert table.column_names == ["id", "indices", "values", "tokens"]
    expected = tei_ort.load(**model).embed_sparse(TEXTS)
    for row, sparse in zip(table.to_pylist(), expected, strict=True):
        assert row["indices"] == sparse.indices.tolist()
        np.testing.assert_allclose(row["values"], sparse.values, atol=1e-5)


def test_embedder_writes_typed_embeddings(tmp_path: Path) -> None:
    """--embedding-type: fixed-size lists of the type, what the API answers for it."""
    model_dir = make_embedder(tmp_path / "model")
    cache = str(tmp_path / "engines")
    model = {"model_id": str(model_dir), "engine_cache": cache}
    api = tei_ort.load(str(model_dir), engine_cache=cache)
    for kind, arrow, width in (
        ("int8", pa.int8(), 32),
        ("uint8", pa.uint8(), 32),
        ("binary", pa.int8(), 4),
        ("ubinary", pa.uint8(), 4),
    ):
        out = tmp_path / kind
        out.mkdir()
        options = EmbedOptions(str(out), model, 16384, True, 1, claim(out), embedding_type=kind)
        CorpusEmbedder(options)(_batch(TEXTS))
        table = pq.read_table(out / "part-00000-000000000007.parquet")
        assert table.schema.field("embedding").type == pa.list_(arrow, width), kind
        expected = api.embed(TEXTS, embedding_type=kind)
        assert table.column("embedding").to_pylist() == expected.tolist(), kind
    api.close()


def test_embedder_writes_late_chunks(tmp_path: Path) -> None:
    model_dir = make_embedder(tmp_path / "model")
    cache = str(tmp_path / "engines")
    model = {"model_id": str(model_dir), "engine_cache": cache}
    options = EmbedOptions(
        str(tmp_path), model, 16384, True, 1, claim(tmp_path), chunk_size=4, chunk_overlap=1
    )
    CorpusEmbedder(options)(_batch(TEXTS))
    table = pq.read_table(tmp_path / "part-00000-000000000007.parquet")
    assert table.column_names == ["id", "chunk_spans", "chunk_embeddings", "tokens"]
    expected = tei_ort.load(str(model_dir), engine_cache=cache).embed_chunks(
        TEXTS, size=4, overlap=1
    )
    for row, want in zip(table.to_pylist(), expected, strict=True):
        assert [tuple(span) for span in row["chunk_spans"]] == want.spans
        np.testing.assert_allclose(row["chunk_embeddings"], want.vectors, atol=1e-6)
    assert len(expected[1].spans) > 1  # the long text gives several chunks
