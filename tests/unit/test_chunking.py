"""CPU micro-batching: the pure plan (tei_ort.engines.chunking) and OrtEngine's chunked run."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from tei_ort.engines.base import EngineInputs, OutputName
from tei_ort.engines.chunking import Chunk, plan_chunks
from tei_ort.engines.ort_engine import OrtEngine
from tei_ort.exporters.cpu_graph import unfuse_skip_layer_norm
from tei_ort.exporters.export import Variant, export_onnx
from tei_ort.model.info import Head
from tests.support.graphs import checkpoint_files
from tests.support.tiny_models import make_model, mixed_batch


def test_every_row_once_longest_first_within_budget() -> None:
    lengths = [5, 40, 7, 7, 300, 1, 40]
    chunks = plan_chunks(lengths, 64)
    rows = np.concatenate([c.rows for c in chunks])
    assert sorted(rows.tolist()) == list(range(len(lengths)))
    assert rows.tolist() == [4, 1, 6, 2, 3, 0, 5]  # longest first, ties in batch order
    for chunk in chunks:
        assert chunk.length == max(lengths[r] for r in chunk.rows)
        # over budget only when one row alone is
        assert len(chunk.rows) * chunk.length <= 64 or len(chunk.rows) == 1
    assert [len(c.rows) for c in chunks] == [1, 1, 1, 4]


def test_budget_fills_pieces() -> None:
    chunks = plan_chunks([16] * 200, 1024)
    assert [len(c.rows) for c in chunks] == [64, 64, 64, 8]
    assert {c.length for c in chunks} == {16}


def test_zero_length_rows_run_with_one_token() -> None:
    chunks = plan_chunks([0, 0], 4)
    assert [c.length for c in chunks] == [1]
    assert plan_chunks([], 4) == []


def _cost(chunks: list[Chunk], call_tokens: int) -> int:
    return sum(call_tokens + len(c.rows) * c.length for c in chunks)


def test_a_few_long_rows_among_short_ones_run_apart() -> None:
    lengths = [10, 12, 200, 11, 10, 9, 13, 180, 10, 12]  # arrival order
    chunks = plan_chunks(lengths, 4096, call_tokens=256)
    assert [(sorted(c.rows.tolist()), c.length) for c in chunks] == [
        ([2, 7], 200),
        ([0, 1, 3, 4, 5, 6, 8, 9], 13),
    ]
    # without the call cost every row is padded to 200 in one piece
    assert [c.length for c in plan_chunks(lengths, 4096)] == [200]


def test_rows_of_about_one_length_stay_together() -> None:
    lengths = [25, 20, 18, 16, 15, 14, 14, 13, 12, 12, 11, 10, 16, 17, 19, 22]
    chunks = plan_chunks(lengths, 2048, call_tokens=256)
    assert len(chunks) == 1 and chunks[0].length == 25


@pytest.mark.parametrize("seed", range(20))
def test_the_cut_is_the_cheapest_within_the_budget(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 120, int(rng.integers(1, 10))).tolist()
    budget, call = int(rng.integers(100, 600)), int(rng.integers(0, 300))
    chunks = plan_chunks(lengths, budget, call_tokens=call)
    rows = np.concatenate([c.rows for c in chunks])
    assert sorted(rows.tolist()) == list(range(len(lengths)))
    for chunk in chunks:
        assert chunk.length == max(lengths[r] for r in chunk.rows)
        assert len(chunk.rows) * chunk.length <= budget or len(chunk.rows) == 1
    # every cut of the rows sorted longest first into consecutive pieces within the budget
    ordered = sorted(lengths, reverse=True)
    n = len(ordered)
    cheapest = None
    for mask in itertools.product([False, True], repeat=n - 1):
        ends = [k + 1 for k in range(n - 1) if mask[k]] + [n]
        starts = [0, *ends[:-1]]
        pieces = [(e - s, ordered[s]) for s, e in zip(starts, ends, strict=True)]
        if all(k * t <= budget or k == 1 for k, t in pieces):
            cost = sum(call + k * t for k, t in pieces)
            cheapest = cost if cheapest is None else min(cheapest, cost)
    assert _cost(chunks, call) == cheapest


@pytest.mark.parametrize("head", [Head.BASE, Head.CLASSIFIER])
def test_chunked_run_equals_one_run(tmp_path: Path, head: Head) -> None:
    make_model("bert", "base" if head is Head.BASE else "classifier", tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    graph = unfuse_skip_layer_norm(
        export_onnx(config, checkpoint_files(tmp_path), head, Variant.ORT)
    )
    onnx.save_model(graph, str(tmp_path / "model.onnx"))
    engine = OrtEngine(tmp_path / "model.onnx", threads=1)
    assert engine.pad_multiple == 1 and engine.chunk_tokens is not None
    batch = mixed_batch("bert")  # lengths 3, 17, 9, 24, padded to 24
    inputs = EngineInputs(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    engine.chunk_tokens = None
    whole = engine.run(inputs)
    engine.chunk_tokens = 30  # pieces: [24], [17], [9, 3]
    pieces = engine.run(inputs)
    # within the budget, cut at every length (a call costing nothing): [24], [17], [9], [3]
    engine.chunk_tokens, engine.call_tokens = 4096, 0
    cut = engine.run(inputs)
    for got in (pieces, cut):
        assert got.shape == whole.shape
        if engine.output_name is OutputName.LAST_HIDDEN_STATE:
            mask = batch["attention_mask"].astype(bool)
            np.testing.assert_allclose(got[mask], whole[mask], atol=1e-5)
            assert not got[1, 17:].any()  # past its piece's length: zeros, not stale memory
        else:
            np.testing.assert_allclose(got, whole, atol=1e-5)
