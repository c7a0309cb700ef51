"""Builders of one engine cache key that start together: one builds, the others reuse it."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from tei_ort.model.cache import EngineCache
from tests.support.cache_keys import KEY


def _build_once(root: str, log: str, start_at: float) -> None:
    def build(tmp: Path) -> None:
        with open(log, "a") as handle:  # one line per build that ran
            handle.write(f"{tmp}\n")
        time.sleep(0.3)  # long enough for every other process to arrive while it builds
        (tmp / "model.onnx").write_bytes(b"graph")

    time.sleep(max(0.0, start_at - time.time()))
    entry = EngineCache(root).get_or_build(KEY, build)
    assert (entry.path / "model.onnx").read_bytes() == b"graph"


def test_processes_starting_together_build_once(tmp_path: Path) -> None:
    log = tmp_path / "builds.log"
    context = multiprocessing.get_context("fork")
    start_at = time.time() + 0.5
    workers = [
        context.Process(target=_build_once, args=(str(tmp_path / "cache"), str(log), start_at))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert [worker.exitcode for worker in workers] == [0, 0, 0, 0]
    assert len(log.read_text().splitlines()) == 1
    leftovers = [p.name for p in (tmp_path / "cache" / "org--model").iterdir()]
    assert sorted(n for n in leftovers if n.startswith(".building-")) == []
