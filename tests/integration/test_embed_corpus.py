"""``tei-ort embed-corpus`` on a local Ray (2 CPUs): 10,000 texts, killed mid-run, started
again; every accepted id is written exactly once, with /embed's vector for its text."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

from tei_ort.http.app import create_app
from tei_ort.model.loading import ModelOptions, load_model
from tei_ort.model.tokenization import Tokenizer
from tei_ort.settings import Settings
from tests.support.app import serve as serve_in_process
from tests.support.tiny_embedder import make_embedder

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "seven",
    "wizards",
    "quietly",
    "hex",
]


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """One local Ray for the module; the runs under test join it as drivers."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield str(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_embedder(tmp_path_factory.mktemp("corpus-model") / "embedder")


def _text(rng: random.Random) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(1, 60)))


def _write_corpus(root: Path) -> tuple[dict[str, str], dict[str, str]]:
    """9,000 JSONL rows and 1,000 Parquet rows, with refused rows mixed in.

    Returns (accepted id -> text, refused id -> reason).
    """
    rng = random.Random(7)
    accepted: dict[str, str] = {}
    lines = []
    for i in range(9000):
        text = _text(rng)
        accepted[f"j{i}"] = text
        lines.append(json.dumps({"id": f"j{i}", "text": text}))
    bad = [
        ({"id": "j5", "text": "a second j5"}, "duplicate id"),
        ({"id": "n1", "text": None}, "null text"),
        ({"id": "e1", "text": ""}, "empty text"),
        ({"id": "s1", "text": 17}, "text is not a string"),
        ({"id": "m1"}, "missing text field"),
    ]
    refused = {}
    for record, reason in bad:
        lines.insert(rng.randint(100, len(lines)), json.dumps(record))
        refused[str(record["id"])] = reason
    lines.insert(50, "{not json")
    (root / "a.jsonl").write_text("\n".join(lines) + "\n")
    ids = [f"p{i}" for i in range(1000)]
    texts = [_text(rng) for _ in ids]
    accepted.update(zip(ids, texts, strict=True))
    pq.write_table(pa.table({"id": ids, "text": texts}), root / "b.parquet")
    return accepted, refused


def _embed_corpus(args: list[str], **popen: Any) -> subprocess.Popen[str]:
    # float32, as the in-process reference (tests/conftest.py) and the test servers run
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["DTYPE"] = "float32"
    argv = [str(Path(sys.executable).parent / "tei-ort"), "embed-corpus", *args]
    return subprocess.Popen(argv, env=env, text=True, **popen)


def _parts(out: Path) -> list[Path]:
    return sorted(out.glob("part-*.parquet"))


def _embed_reference(model_dir: Path, cache: Path, texts: list[str]) -> np.ndarray:
    """/embed's vectors for ``texts``, 32 per request, from the plain app in process."""
    settings = Settings(model_id=str(model_dir), engine_cache=str(cache), tokenization_workers=1)
    model = load_model(ModelOptions.from_settings(settings))

    async def run() -> list[list[float]]:
        vectors: list[list[float]] = []
        async with serve_in_process(create_app(settings, model)) as client:
            for start in range(0, len(texts), 32):
                response = await client.post("/embed", json={"inputs": texts[start : start + 32]})
                assert response.status_code == 200, response.text
                vectors.extend(response.json())
        return vectors

    return np.asarray(asyncio.run(run()), dtype=np.float32)  # (N, D)


def test_killed_and_resumed_run_writes_each_id_once(
    tmp_path: Path, ray_address: str, model_dir: Path
) -> None:
    data = tmp_path / "corpus"
    data.mkdir()
    accepted, refused = _write_corpus(data)
    out = tmp_path / "out"
    cache = tmp_path / "engines"
    args = [
        "--model-id", str(model_dir),
        "--engine-cache", str(cache),
        "--input", str(data),
        "--output", str(out),
        "--ray-address", ray_address,
        "--rows-per-file", "200",
    ]  # fmt: skip

    first = _embed_corpus(args, start_new_session=True, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while len(_parts(out)) < 3 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)  # the driver and anything it started
    first.wait(30)
    killed_with = sum(pq.read_metadata(p).num_rows for p in _parts(out))
    assert 0 < killed_with < len(accepted), "the first run was not stopped mid-way"

    second = _embed_corpus(args, stdout=subprocess.PIPE)
    stdout, _ = second.communicate(timeout=300)
    assert second.returncode == 0, stdout
    summary = json.loads(stdout)
    # the killed run's actors may finish a part after the kill; the next run's claim
    # (corpus/output.py) counts it as done or refuses it, never both
    assert summary["already_written"] >= killed_with
    assert summary["written_now"] == len(accepted) - summary["already_written"]
    assert summary["embedded_rows"] == len(accepted)
    assert summary["input_rows"] == len(accepted) + len(refused) + 1
    assert summary["rejected_rows"] == len(refused) + 1

    table = pa.concat_tables(pq.read_table(p) for p in _parts(out))
    ids = table.column("id").to_pylist()
    assert len(ids) == len(set(ids)) == len(accepted)
    assert set(ids) == set(accepted)
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 32)
    rejects = pq.read_table(out / "rejects.parquet").to_pylist()
    assert {r["id"]: r["reason"] for r in rejects if r["id"] is not None} == refused
    assert [r["reason"] for r in rejects if r["id"] is None] == ["invalid json"]

    texts = [accepted[i] for i in ids]
    got = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)  # (N, 32)
    expected = _embed_reference(model_dir, cache, texts)
    assert float(np.max(np.abs(got - expected))) <= 1e-5
    encoded = Tokenizer.from_dir(model_dir).encode_batch(texts)
    assert table.column("tokens").to_pylist() == [len(e) for e in encoded]

    third = _embed_corpus(args, stdout=subprocess.PIPE)
    stdout, _ = third.communicate(timeout=300)
    assert third.returncode == 0 and json.loads(stdout)["written_now"] == 0
    assert len(pa.concat_tables(pq.read_table(p) for p in _parts(out))) == len(accepted)
